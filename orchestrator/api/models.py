"""Wire models for the Message Batches API (see docs/message-batches-api.md §2).

Every model keeps fields it does not know (``extra="allow"``): the API adds fields over
time and the orchestrator must not choke on them, nor drop them when it re-serialises.
No httpx here; the client in ``client.py`` is the only module that talks HTTP.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from orchestrator.domain.states import ResultType

#: Error-envelope messages longer than this (e.g. a proxy's HTML page) are cut, in characters.
ERROR_SNIPPET_CHARS = 200


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: RFC 3339 timestamp with an offset, normalised to UTC (the API sends ``...Z``).
UTCDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class RequestCounts(_WireModel):
    """How many requests of a batch are in each state (§2.2).

    All but ``processing`` stay zero until the whole batch has ended.
    """

    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int

    @property
    def total(self) -> int:
        """The number of requests in the batch (the five counts always sum to it)."""
        return self.processing + self.succeeded + self.errored + self.canceled + self.expired


class MessageBatch(_WireModel):
    """A batch as returned by create, retrieve, list and cancel (§2.1).

    ``processing_status`` is a plain string so a future status does not break parsing;
    ``domain.states.local_batch_status`` reads it. ``id`` has no length
    check: "format/length may change".
    """

    id: str
    type: str = "message_batch"
    processing_status: str
    request_counts: RequestCounts
    created_at: UTCDatetime
    expires_at: UTCDatetime | None
    ended_at: UTCDatetime | None
    cancel_initiated_at: UTCDatetime | None
    # The guide's examples omit archived_at; the API reference lists it.
    archived_at: UTCDatetime | None = None
    results_url: str | None


class MessageBatchPage(_WireModel):
    """One page of ``GET /v1/messages/batches``; ``last_id`` is the next ``after_id`` (§2.4)."""

    data: list[MessageBatch]
    has_more: bool
    first_id: str | None
    last_id: str | None


class DeletedMessageBatch(_WireModel):
    """The answer to a delete: ``{"id", "type": "message_batch_deleted"}`` (§2.3)."""

    id: str
    type: str = "message_batch_deleted"


class MessageTokensCount(_WireModel):
    """The answer of ``POST /v1/messages/count_tokens``."""

    input_tokens: int


class CacheCreation(_WireModel):
    """Prompt-cache writes split by time to live."""

    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class Usage(_WireModel):
    """Token usage of one message; only the two counts are always present (§2.6)."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: CacheCreation | None = None
    service_tier: str | None = None
    server_tool_use: dict[str, Any] | None = None
    inference_geo: str | None = None


class Message(_WireModel):
    """The assistant message inside a succeeded result (§2.6)."""

    id: str
    type: str = "message"
    role: str = "assistant"
    model: str
    # Kept as plain dicts: there are a dozen block types and more keep arriving.
    content: list[dict[str, Any]]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage

    @property
    def text(self) -> str:
        """All ``text`` blocks' text, concatenated in order (other block types skipped)."""
        return "".join(
            block["text"]
            for block in self.content
            if block.get("type") == "text" and isinstance(block.get("text"), str)
        )


class ErrorDetail(_WireModel):
    """The inner ``error`` object: ``type`` such as ``invalid_request_error``, and a message."""

    type: str
    message: str


class ErrorResponse(_WireModel):
    """The error envelope used by HTTP errors and by errored results (§3.3, §2.5)."""

    type: str = "error"
    error: ErrorDetail
    request_id: str | None = None


class SucceededResult(_WireModel):
    """The request produced a message (the only billed result type)."""

    type: Literal[ResultType.SUCCEEDED]
    message: Message


class ErroredResult(_WireModel):
    """The request failed; ``error.error.type`` says whether resending can help."""

    type: Literal[ResultType.ERRORED]
    error: ErrorResponse


class CanceledResult(_WireModel):
    """The batch was canceled before this request was sent to the model."""

    type: Literal[ResultType.CANCELED]


class ExpiredResult(_WireModel):
    """The batch hit its 24 h limit before this request was processed."""

    type: Literal[ResultType.EXPIRED]


BatchResult = Annotated[
    SucceededResult | ErroredResult | CanceledResult | ExpiredResult,
    Field(discriminator="type"),
]


class ResultLine(_WireModel):
    """One line of a results ``.jsonl``; join on ``custom_id``, results are not in order."""

    custom_id: str
    result: BatchResult


def parse_result_line(raw: bytes) -> ResultLine:
    """Parse one results line.

    Raises ``ValueError`` (``orjson.JSONDecodeError`` or pydantic's ``ValidationError``,
    both subclasses) for anything that is not a valid line, including an unknown result
    ``type``: the caller should record such a line as malformed rather than guess.
    """
    return ResultLine.model_validate(orjson.loads(raw))


def load_result_line(raw: bytes) -> dict[str, Any]:
    """One results line as plain values: what :func:`parse_result_line` accepts, as a
    dict of exactly the declared types (the line itself when it is plain already, the
    validated model's dump otherwise). Raises ``ValueError`` as it does, with the same
    message."""
    data = orjson.loads(raw)
    if is_plain_result_line(data):
        return data  # type: ignore[no-any-return]
    return ResultLine.model_validate(data).model_dump()


def is_plain_result_line(data: Any) -> bool:
    """True when ``data`` (a results line as ``orjson.loads`` gives it) holds exactly what
    :class:`ResultLine` declares: every required field present, every declared field of
    exactly its declared type (an ``int`` is an ``int``, not a bool, float or string).
    The model would then accept it and change no value, so a reader may take the values
    from the dict itself: validating a 1-2 KB line costs twice as much as parsing it,
    and the API writes every line this way.

    False is no verdict: validate with :class:`ResultLine`, which coerces what it can
    and names what is wrong with the rest. Undeclared fields are allowed, as the
    models allow them (``extra="allow"``).
    """
    if type(data) is not dict or type(data.get("custom_id")) is not str:
        return False
    result = data.get("result")
    if type(result) is not dict:
        return False
    kind = result.get("type")
    if type(kind) is not str:
        return False
    if kind == ResultType.SUCCEEDED:
        return _plain_message(result.get("message"))
    if kind == ResultType.ERRORED:
        return _plain_error(result.get("error"))
    return kind in (ResultType.CANCELED, ResultType.EXPIRED)


def _plain_message(message: Any) -> bool:
    if type(message) is not dict:
        return False
    get = message.get
    content = get("content")
    return (
        type(get("id")) is str
        and type(get("model")) is str
        and type(get("type", "")) is str  # a default, but never None
        and type(get("role", "")) is str
        and _is_str_or_none(get("stop_reason"))
        and _is_str_or_none(get("stop_sequence"))
        and type(content) is list
        and all(type(block) is dict for block in content)
        and _plain_usage(get("usage"))
    )


def _plain_usage(usage: Any) -> bool:
    if type(usage) is not dict:
        return False
    get = usage.get
    split = get("cache_creation")
    return (
        type(get("input_tokens")) is int
        and type(get("output_tokens")) is int
        and _is_int_or_none(get("cache_creation_input_tokens"))
        and _is_int_or_none(get("cache_read_input_tokens"))
        and (
            split is None
            or (
                type(split) is dict
                and _is_int_or_none(split.get("ephemeral_5m_input_tokens"))
                and _is_int_or_none(split.get("ephemeral_1h_input_tokens"))
            )
        )
        and _is_str_or_none(get("service_tier"))
        and _is_str_or_none(get("inference_geo"))
        and (get("server_tool_use") is None or type(get("server_tool_use")) is dict)
    )


def _plain_error(envelope: Any) -> bool:
    if type(envelope) is not dict:
        return False
    detail = envelope.get("error")
    return (
        type(envelope.get("type", "")) is str
        and _is_str_or_none(envelope.get("request_id"))
        and type(detail) is dict
        and type(detail.get("type")) is str
        and type(detail.get("message")) is str
    )


def _is_int_or_none(value: object) -> bool:
    return value is None or type(value) is int


def _is_str_or_none(value: object) -> bool:
    return value is None or type(value) is str


def parse_error_envelope(body: bytes) -> tuple[str | None, str, str | None]:
    """Return ``(error type, message, request_id)`` from an HTTP error body.

    Tolerates anything: a proxy's HTML page or an empty body gives
    ``(None, <short text snippet or "">, None)``.
    """
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, _snippet(body), None
    if not isinstance(envelope, dict):
        return None, _snippet(body), None
    error = envelope.get("error")
    error = error if isinstance(error, dict) else {}
    return (
        _str_or_none(error.get("type")),
        _str_or_none(error.get("message")) or _snippet(body),
        _str_or_none(envelope.get("request_id")),
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _snippet(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", errors="replace").split())
    if len(text) <= ERROR_SNIPPET_CHARS:
        return text
    return text[:ERROR_SNIPPET_CHARS] + "…"
