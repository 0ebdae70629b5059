"""Messages API create params, validated before any spend (README, guarantee 4).

A batch member's ``params`` is a non-streaming Messages create body
(api/message-batches.md §3.1). The API checks most of it asynchronously and
reports problems only as ``errored`` results after the whole batch ended, so
every rendered request is checked here first. The models mirror the API's own
schema: unknown fields are "Extra inputs are not permitted", as the API says.

Validation is strict (no coercion): the dict the user wrote is what is sent, so
``max_tokens = "16"`` must fail here rather than in the batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError
from pydantic_core import ErrorDetails

from orchestrator.domain.contract import (
    API_VERSION_2023,
    API_VERSION_2026,
    API_VERSIONS,
    DEFAULT_API_VERSION,
)
from orchestrator.domain.pricing import ModelInfo, PriceTable

#: Sampling params removed in 2026-10-21 ("Extra inputs are not permitted", §1.3).
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
#: Params the batch endpoint refuses (§3.2, §10.3), with what to do instead.
BATCH_UNSUPPORTED = {
    "stream": "streaming is not supported in Message Batches; remove stream",
    "speed": "fast mode (speed) is not available in Message Batches; remove speed",
    "betas": (
        "beta flags are sent as the anthropic-beta header: put them in the spec's "
        "`betas = [...]` field, not in params"
    ),
    "store": "Threads (store) are not supported in Message Batches",
    "previous_thread_event_id": "Threads are not supported in Message Batches",
    "cache_hint": "cache_hint is not supported in Message Batches",
    "context_hint": "context_hint is not supported in Message Batches",
    "research_preview_2026_02": "research previews are not supported in Message Batches",
}
#: Loc segments starting with this mark are union tags, not fields; paths omit them.
_TAG = "@"


class ModelDeprecatedWarning(UserWarning):
    """A request uses a deprecated model: it still works, until its retirement day.

    Issued by :func:`check_model` through :mod:`warnings`, so a caller may show it,
    silence it (``warnings.filterwarnings("ignore", category=ModelDeprecatedWarning)``)
    or make it an error; by default Python shows it once per model.
    """


class ParamsError(ValueError):
    """The first problem found in one request's params.

    ``path`` is dotted from the params root (``messages.0.content.1.source.media_type``),
    like the API's own per-request messages; empty for the params object itself.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def _type_tag(value: Any) -> str | None:
    """Discriminator: the object's ``type`` as a tag, or None when it has none."""
    kind = value.get("type") if isinstance(value, Mapping) else None
    return f"{_TAG}{kind}" if isinstance(kind, str) else None


def _str_or_list_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return f"{_TAG}str"
    return f"{_TAG}list" if isinstance(value, list) else None


def _tool_tag(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return None
    kind = value.get("type", "custom")
    if kind in (None, "custom"):
        return f"{_TAG}custom"
    return f"{_TAG}server" if isinstance(kind, str) else None


_STR_OR_BLOCKS = Discriminator(
    _str_or_list_tag,
    custom_error_type="str_or_blocks",
    custom_error_message="Input should be a string or a list of content blocks",
)
NonEmptyStr = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CacheControl(_Model):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class CitationsConfig(_Model):
    enabled: bool


class TextBlock(_Model):
    type: Literal["text"]
    text: NonEmptyStr
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class Base64ImageSource(_Model):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: NonEmptyStr


class URLSource(_Model):
    type: Literal["url"]
    url: NonEmptyStr


class FileSource(_Model):
    type: Literal["file"]
    file_id: NonEmptyStr


ImageSource = Annotated[
    Annotated[Base64ImageSource, Tag("@base64")]
    | Annotated[URLSource, Tag("@url")]
    | Annotated[FileSource, Tag("@file")],
    Discriminator(_type_tag),
]


class ImageBlock(_Model):
    type: Literal["image"]
    source: ImageSource
    cache_control: CacheControl | None = None


class Base64PDFSource(_Model):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: NonEmptyStr


class PlainTextSource(_Model):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


_DocumentContentBlock = Annotated[
    Annotated[TextBlock, Tag("@text")] | Annotated[ImageBlock, Tag("@image")],
    Discriminator(_type_tag),
]


class ContentSource(_Model):
    type: Literal["content"]
    content: Annotated[
        Annotated[NonEmptyStr, Tag("@str")] | Annotated[list[_DocumentContentBlock], Tag("@list")],
        _STR_OR_BLOCKS,
    ]


DocumentSource = Annotated[
    Annotated[Base64PDFSource, Tag("@base64")]
    | Annotated[PlainTextSource, Tag("@text")]
    | Annotated[URLSource, Tag("@url")]
    | Annotated[ContentSource, Tag("@content")]
    | Annotated[FileSource, Tag("@file")],
    Discriminator(_type_tag),
]


class DocumentBlock(_Model):
    type: Literal["document"]
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    citations: CitationsConfig | None = None
    cache_control: CacheControl | None = None


class SearchResultBlock(_Model):
    type: Literal["search_result"]
    source: NonEmptyStr
    title: NonEmptyStr
    content: list[TextBlock] = Field(min_length=1)
    citations: CitationsConfig | None = None
    cache_control: CacheControl | None = None


class ToolUseBlock(_Model):
    type: Literal["tool_use"]
    id: NonEmptyStr
    name: NonEmptyStr
    input: dict[str, Any]
    cache_control: CacheControl | None = None
    caller: dict[str, Any] | None = None


_ToolResultContentBlock = Annotated[
    Annotated[TextBlock, Tag("@text")]
    | Annotated[ImageBlock, Tag("@image")]
    | Annotated[DocumentBlock, Tag("@document")]
    | Annotated[SearchResultBlock, Tag("@search_result")],
    Discriminator(_type_tag),
]


class ToolResultBlock(_Model):
    type: Literal["tool_result"]
    tool_use_id: NonEmptyStr
    content: (
        Annotated[
            Annotated[str, Tag("@str")] | Annotated[list[_ToolResultContentBlock], Tag("@list")],
            _STR_OR_BLOCKS,
        ]
        | None
    ) = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(_Model):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(_Model):
    type: Literal["redacted_thinking"]
    data: str


class ServerToolBlock(BaseModel):
    """Server-tool turns replayed from an earlier response (§2.6); passed through as-is."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str


ContentBlock = Annotated[
    Annotated[TextBlock, Tag("@text")]
    | Annotated[ImageBlock, Tag("@image")]
    | Annotated[DocumentBlock, Tag("@document")]
    | Annotated[ToolUseBlock, Tag("@tool_use")]
    | Annotated[ToolResultBlock, Tag("@tool_result")]
    | Annotated[ThinkingBlock, Tag("@thinking")]
    | Annotated[RedactedThinkingBlock, Tag("@redacted_thinking")]
    | Annotated[SearchResultBlock, Tag("@search_result")]
    | Annotated[ServerToolBlock, Tag("@server_tool_use")]
    | Annotated[ServerToolBlock, Tag("@web_search_tool_result")]
    | Annotated[ServerToolBlock, Tag("@web_fetch_tool_result")]
    | Annotated[ServerToolBlock, Tag("@code_execution_tool_result")]
    | Annotated[ServerToolBlock, Tag("@bash_code_execution_tool_result")]
    | Annotated[ServerToolBlock, Tag("@text_editor_code_execution_tool_result")]
    | Annotated[ServerToolBlock, Tag("@tool_search_tool_result")]
    | Annotated[ServerToolBlock, Tag("@mcp_tool_use")]
    | Annotated[ServerToolBlock, Tag("@mcp_tool_result")]
    | Annotated[ServerToolBlock, Tag("@container_upload")],
    Discriminator(_type_tag),
]


class MessageParam(_Model):
    role: Literal["user", "assistant"]
    content: Annotated[
        Annotated[NonEmptyStr, Tag("@str")]
        | Annotated[list[ContentBlock], Field(min_length=1), Tag("@list")],
        _STR_OR_BLOCKS,
    ]


class InputSchema(BaseModel):
    """A tool's JSON schema: must describe an object; the rest is free-form."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    type: Literal["object"]


class CustomTool(_Model):
    type: Literal["custom"] | None = None
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")]
    description: str | None = None
    input_schema: InputSchema
    cache_control: CacheControl | None = None
    strict: bool | None = None
    defer_loading: bool | None = None
    input_examples: list[dict[str, Any]] | None = None
    allowed_callers: list[str] | None = None


class ServerTool(BaseModel):
    """A server tool such as ``{"type": "web_search_20250305", "name": "web_search"}``."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    name: str | None = None


Tool = Annotated[
    Annotated[CustomTool, Tag("@custom")] | Annotated[ServerTool, Tag("@server")],
    Discriminator(_tool_tag),
]


class ToolChoiceAuto(_Model):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Model):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Model):
    type: Literal["none"]


class ToolChoiceTool(_Model):
    type: Literal["tool"]
    name: NonEmptyStr
    disable_parallel_tool_use: bool | None = None


ToolChoice = Annotated[
    Annotated[ToolChoiceAuto, Tag("@auto")]
    | Annotated[ToolChoiceAny, Tag("@any")]
    | Annotated[ToolChoiceNone, Tag("@none")]
    | Annotated[ToolChoiceTool, Tag("@tool")],
    Discriminator(_type_tag),
]


class ThinkingEnabled(_Model):
    type: Literal["enabled"]
    budget_tokens: Annotated[int, Field(ge=1024)]
    display: str | None = None


class ThinkingDisabled(_Model):
    type: Literal["disabled"]


class ThinkingAdaptive(_Model):
    type: Literal["adaptive"]
    display: str | None = None


Thinking = Annotated[
    Annotated[ThinkingEnabled, Tag("@enabled")]
    | Annotated[ThinkingDisabled, Tag("@disabled")]
    | Annotated[ThinkingAdaptive, Tag("@adaptive")],
    Discriminator(_type_tag),
]


class Metadata(_Model):
    user_id: str | None = None


class MessageParams(_Model):
    """One request's ``params`` (a non-streaming Messages create body)."""

    model: NonEmptyStr
    max_tokens: Annotated[int, Field(ge=1)]
    messages: list[MessageParam] = Field(min_length=1)
    system: (
        Annotated[
            Annotated[str, Tag("@str")] | Annotated[list[TextBlock], Tag("@list")],
            _STR_OR_BLOCKS,
        ]
        | None
    ) = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    stop_sequences: list[NonEmptyStr] | None = None
    metadata: Metadata | None = None
    #: 2023-06-01 only; validate_params rejects them under 2026-10-21.
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    #: Only false is allowed; validate_params explains a true value.
    stream: Literal[False] | None = None
    output_config: dict[str, Any] | None = None
    cache_control: CacheControl | None = None
    container: Any = None
    inference_geo: str | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    diagnostics: Any = None
    user_profile_id: str | None = None
    mcp_servers: list[dict[str, Any]] | None = None
    context_management: dict[str, Any] | None = None


def validate_params(params: Mapping[str, Any], *, api_version: str = DEFAULT_API_VERSION) -> None:
    """Check one request's params as the API would; raise ParamsError for the first problem."""
    if api_version not in API_VERSIONS:
        raise ValueError(f"unknown API version {api_version!r}; use one of {sorted(API_VERSIONS)}")
    if not isinstance(params, Mapping):
        raise ParamsError("", "params must be a JSON object")
    _check_batch_support(params, api_version)
    try:
        model = MessageParams.model_validate(params)
    except ValidationError as exc:
        raise _first_error(exc) from None
    _check_messages(model, api_version)
    _check_thinking(model)
    _check_tool_choice(model)


def check_model(
    params: Mapping[str, Any],
    models: PriceTable,
    *,
    allow_unknown: bool = False,
    betas: Collection[str] | None = None,
    today: date | None = None,
) -> None:
    """Check params already passed by :func:`validate_params` against the model table.

    The API only reports an unknown or retired model or a too-large ``max_tokens`` as
    errored results after the whole batch ended (§3.2), so they are refused here: a
    model the table does not list (unless ``allow_unknown``), a model retired by
    ``today`` (default: the current UTC date), ``max_tokens`` above the model's limit,
    and ``thinking`` on a model without it. A deprecated model passes with a
    :class:`ModelDeprecatedWarning`.

    ``betas`` are the anthropic-beta flags the batch is sent with (the spec's ``betas``);
    a flag such as ``output-300k-2026-03-24`` raises the limit of the models it applies
    to (§1.4). None means the caller does not say, and only the plain limit counts.
    """
    model = str(params["model"])
    info = models.model(model)
    day = today if today is not None else datetime.now(UTC).date()
    if info is None:
        if allow_unknown:
            return
        raise ParamsError(
            "model",
            f"unknown model {model!r}; known: {', '.join(models.available_ids(day))} (and their "
            "dated -YYYYMMDD ids); set allow_unknown_models = true in the spec for models newer "
            "than this table",
        )
    status = info.status(day)
    if status == "retired":
        raise ParamsError(
            "model",
            f"{model} was retired on {info.retired} and the API refuses it; "
            f"use {info.replacement} instead",
        )
    _check_output_limit(model, params["max_tokens"], info, betas)
    thinking = params.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if info.supports_thinking is False and kind not in (None, "disabled"):
        raise ParamsError("thinking", f"{model} does not support thinking; remove thinking")
    if status == "deprecated":
        warnings.warn(ModelDeprecatedWarning(_deprecation_message(model, info)), stacklevel=2)


def _check_output_limit(
    model: str, max_tokens: object, info: ModelInfo, betas: Collection[str] | None
) -> None:
    limit = info.output_limit(betas or ())
    if not isinstance(max_tokens, int) or max_tokens <= limit:
        return
    hint = "lower max_tokens"
    if betas is not None:
        raising = [
            beta for beta, raised in info.max_output_tokens_with_beta if raised >= max_tokens
        ]
        if raising:
            hint += f' or add "{raising[0]}" to the spec\'s betas'
    raise ParamsError(
        "max_tokens",
        f"{max_tokens:,} is more than {model} can produce: at most {limit:,} output tokens; {hint}",
    )


def _deprecation_message(model: str, info: ModelInfo) -> str:
    if info.retired is not None:
        when = f"it will be retired on {info.retired}, after which the API refuses it"
    else:
        when = "no retirement day is announced yet"
    return f"{model} is deprecated ({when}); move to {info.replacement}"


def _check_batch_support(params: Mapping[str, Any], api_version: str) -> None:
    if _BATCH_CHECKED.isdisjoint(params.keys()):  # the common case, in one set operation
        return
    for name, why in BATCH_UNSUPPORTED.items():
        if name == "stream" and params.get(name) in (None, False):
            continue
        if name in params:
            raise ParamsError(name, why)
    if api_version == API_VERSION_2026:
        for name in SAMPLING_PARAMS:
            if name in params:
                raise ParamsError(
                    name,
                    "Extra inputs are not permitted (temperature, top_p and top_k were removed "
                    f'in API version {API_VERSION_2026}; remove it or set api_version = "'
                    f'{API_VERSION_2023}")',
                )


#: Every name ``_check_batch_support`` looks for.
_BATCH_CHECKED = frozenset(BATCH_UNSUPPORTED) | frozenset(SAMPLING_PARAMS)


def _check_messages(model: MessageParams, api_version: str) -> None:
    if model.messages[0].role != "user":
        raise ParamsError("messages.0.role", 'the first message must have role "user"')
    if api_version != API_VERSION_2026:
        return
    for i, message in enumerate(model.messages):
        if isinstance(message.content, str):
            continue
        for j, block in enumerate(message.content):
            where = f"messages.{i}.content.{j}"
            if message.role == "assistant" and isinstance(block, DocumentBlock):
                raise ParamsError(
                    where,
                    f"document blocks are not allowed in assistant messages "
                    f"in API version {API_VERSION_2026}",
                )
            if message.role == "user" and isinstance(block, TextBlock) and block.citations:
                raise ParamsError(
                    f"{where}.citations",
                    f"text blocks in user messages may not carry citations "
                    f"in API version {API_VERSION_2026}",
                )


def _check_thinking(model: MessageParams) -> None:
    thinking = model.thinking
    if isinstance(thinking, ThinkingEnabled) and thinking.budget_tokens >= model.max_tokens:
        raise ParamsError(
            "thinking.budget_tokens",
            f"must be less than max_tokens ({model.max_tokens})",
        )


def _check_tool_choice(model: MessageParams) -> None:
    choice = model.tool_choice
    if not isinstance(choice, ToolChoiceTool):
        return
    names = {tool.name for tool in model.tools or ()}
    if choice.name not in names:
        known = ", ".join(sorted(n for n in names if n)) or "none"
        raise ParamsError("tool_choice.name", f"no tool named {choice.name!r} (tools: {known})")


def _first_error(exc: ValidationError) -> ParamsError:
    error = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in error["loc"] if not _is_tag(part))
    return ParamsError(path, _error_message(error))


def _is_tag(part: str | int) -> bool:
    return isinstance(part, str) and part.startswith(_TAG)


def _error_message(error: ErrorDetails) -> str:
    ctx = error.get("ctx") or {}
    if error["type"] == "union_tag_invalid":
        expected = str(ctx.get("expected_tags", "")).replace(_TAG, "")
        tag = str(ctx.get("tag", "")).removeprefix(_TAG)
        return f"unknown type {tag!r} (expected one of: {expected})"
    if error["type"] == "union_tag_not_found":
        return 'Input should be an object with a "type" field'
    return error["msg"].removeprefix("Value error, ")
