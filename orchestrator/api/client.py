"""The httpx client for the Message Batches API: the only code that sends the API key.

Contract (docs/message-batches-api.md): endpoints §1.1, headers §1.2, list cursors
§4.2, results §5, error envelope §3.3 / §7.1, retry policy §8 (via ``retry.py``).
Every httpx error is mapped at this boundary to ``orchestrator.errors`` with
``raise ... from exc``; no message contains the API key.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
import orjson
from pydantic import BaseModel, ValidationError

from orchestrator import errors
from orchestrator.api import jsonl, retry
from orchestrator.api.body import CreateBody, CreateRequests
from orchestrator.api.models import (
    DeletedMessageBatch,
    MessageBatch,
    MessageBatchPage,
    MessageTokensCount,
    parse_error_envelope,
)
from orchestrator.domain.contract import DEFAULT_API_VERSION, DEFAULT_BASE_URL

#: Per-read timeout in seconds (SDK default); a long but steady download never hits it.
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_USER_AGENT = "batch-orchestrator/0.1"
#: Params that ``/v1/messages/count_tokens`` accepts; batch-only ones such as
#: ``max_tokens`` or ``metadata`` would be rejected there.
COUNT_TOKENS_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"})

BATCHES_PATH = "/v1/messages/batches"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDACTED = "[redacted]"

_STATUS_ERRORS: dict[int, type[errors.APIStatusError]] = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    402: errors.BillingError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    408: errors.RequestTimeoutError,
    409: errors.ConflictError,
    413: errors.RequestTooLargeError,
    429: errors.RateLimitError,
    529: errors.OverloadedError,
}
_STATUS_HINTS = {
    401: "check ANTHROPIC_API_KEY",
    402: "check the organization's billing in the Console",
    403: "the key's workspace has no access to this resource",
    413: "the batch body is over 256 MB; plan smaller batches",
    429: "rate limited; retry later",
}

M = TypeVar("M", bound=BaseModel)


class ClientState(enum.Enum):
    """Lifecycle of a ``BatchesClient`` (as httpx's ``ClientState``)."""

    #: Built; no call made and not entered yet.
    UNOPENED = 1
    #: Entered as a context manager, or used for a call.
    OPEN = 2
    #: Closed; every further call raises ``RuntimeError``.
    CLOSED = 3


@dataclass(frozen=True)
class _Failure:
    """One failed attempt: the error to raise, and whether another attempt may help."""

    error: errors.APIError
    cause: BaseException | None
    retryable: bool
    retry_after_s: float | None = None


class BatchesClient:
    """Synchronous client for the Message Batches API.

    Use it as a context manager (or call ``close()``). Every call but ``create``
    retries transient failures (transport errors; 408, 409, 429, 5xx unless
    ``x-should-retry`` says otherwise) up to ``max_retries`` times, waiting
    ``retry.backoff_delay`` via the injected ``sleep``. ``create`` is stricter, because
    the API has no idempotency key: see its docstring.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = DEFAULT_API_VERSION,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        create_timeout_s: float | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        if not api_key:
            raise errors.ConfigError("The API key is empty; set ANTHROPIC_API_KEY.")
        if max_retries < 0:
            raise errors.ConfigError(f"max_retries must be 0 or more, not {max_retries}.")
        self._base_url = _api_base_url(base_url)
        self._api_key = api_key
        self._api_version = api_version
        self._user_agent = user_agent
        self._max_retries = max_retries
        # A create waits this long for its answer: past it, the outcome is reconciled
        # by listing, so a short wait bounds how long a job stalls on a lost answer.
        self._create_timeout = httpx.Timeout(
            create_timeout_s or timeout_s, connect=connect_timeout_s
        )
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._state = ClientState.UNOPENED
        # No redirects: a 3xx to another host must not carry the key there.
        self._http = httpx.Client(
            base_url=self._base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            follow_redirects=False,
        )

    # -- lifecycle -------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """Where this client is in its lifecycle."""
        return self._state

    def __enter__(self) -> Self:
        if self._state is not ClientState.UNOPENED:
            raise RuntimeError(
                f"This BatchesClient is {self._state.name.lower()}; "
                "a client can be entered once only: create a new one."
            )
        self._state = ClientState.OPEN
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool. Calling it again does nothing."""
        self._state = ClientState.CLOSED
        self._http.close()

    @property
    def endpoint(self) -> str:
        """The API base URL this client talks to, as recorded with what it creates."""
        return str(self._base_url.copy_with(username=None, password=None)).rstrip("/")

    def __repr__(self) -> str:
        return f"<BatchesClient base_url={str(self._base_url)!r} state={self._state.name}>"

    # -- batches ---------------------------------------------------------------------

    def create(
        self,
        requests: CreateRequests,
        *,
        betas: Sequence[str] = (),
        api_version: str | None = None,
    ) -> MessageBatch:
        """Create a batch: ``POST /v1/messages/batches``.

        Each element of ``requests`` is the exact serialized JSON of one
        ``{"custom_id": ..., "params": {...}}`` object. The body
        ``{"requests":[r1,r2,...]}`` is streamed, never joined in memory:

        * a ``Sequence[bytes]`` is sent with an exact ``Content-Length`` and can be resent;
        * a zero-argument callable returning a fresh iterable is sent chunked and can be
          resent (it is called once per attempt);
        * any other iterable is sent chunked once: it cannot be replayed, so it is never
          retried (the mapped error is raised at the first failure).

        Because a resent create can make a duplicate batch (and double spend), create
        is retried only when the request provably was not processed: a connection that
        never opened, or a 408, 409, 429 or 529 refusal (honouring ``retry-after``). A
        timeout or reset after the body may have been sent, a 5xx other than 529, or a
        2xx whose body is not a batch raises ``errors.AmbiguousCreateError`` at once:
        reconcile by listing batches before sending anything again.

        ``api_version`` (default: the client's) is the ``anthropic-version`` the requests
        are validated under; ``betas`` go in the ``anthropic-beta`` header.
        """
        body = CreateBody(requests)
        headers = {"content-type": "application/json", **_version_headers(betas, api_version)}
        if body.content_length is not None:
            headers["content-length"] = str(body.content_length)
        build = self._builder(
            "POST", BATCHES_PATH, headers=headers, content=body.chunks, timeout=self._create_timeout
        )
        response = self._send(build, create=True, can_resend=body.replayable)
        try:
            return MessageBatch.model_validate_json(response.content)
        except ValidationError as exc:
            raise errors.AmbiguousCreateError(
                f"The create call answered {response.status_code} but its body is not a batch;"
                " the batch may exist: reconcile by listing batches before sending again.",
                answered=True,
            ) from exc

    def retrieve(self, batch_id: str, *, betas: Sequence[str] = ()) -> MessageBatch:
        """Fetch one batch: ``GET /v1/messages/batches/{batch_id}`` (``betas``: those the
        batch was created with, sent along as the SDKs do)."""
        headers = _version_headers(betas, None)
        return self._get_model(MessageBatch, "GET", _batch_path(batch_id), headers=headers)

    def list_page(
        self, *, limit: int = 1000, after_id: str | None = None, before_id: str | None = None
    ) -> MessageBatchPage:
        """One page of batches, newest first (``limit`` 1-1000; cursors per §4.1)."""
        params: dict[str, str | int] = {"limit": limit}
        if after_id is not None:
            params["after_id"] = after_id
        if before_id is not None:
            params["before_id"] = before_id
        return self._get_model(MessageBatchPage, "GET", BATCHES_PATH, params=params)

    def iter_batches(
        self, *, limit: int = 1000, after_id: str | None = None
    ) -> Iterator[MessageBatch]:
        """Every batch from newest to oldest, one page at a time.

        Follows the SDK's auto-pagination (§4.2): the next page is ``after_id=last_id``;
        stop when ``has_more`` is false, the page is empty, or ``last_id`` is null.
        """
        cursor = after_id
        while True:
            page = self.list_page(limit=limit, after_id=cursor)
            yield from page.data
            if not page.has_more or not page.data or page.last_id is None:
                return
            cursor = page.last_id

    def cancel(self, batch_id: str, *, betas: Sequence[str] = ()) -> MessageBatch:
        """Ask the API to cancel: ``POST .../{batch_id}/cancel``; the batch comes back
        ``canceling`` and ends later with partial results (§6.3)."""
        path = f"{_batch_path(batch_id)}/cancel"
        # The SDK sends content-type on this body-less POST; do the same.
        headers = {"content-type": "application/json", **_version_headers(betas, None)}
        return self._get_model(MessageBatch, "POST", path, headers=headers)

    def delete(self, batch_id: str) -> DeletedMessageBatch:
        """Delete an ended batch: ``DELETE /v1/messages/batches/{batch_id}`` (§6.5)."""
        return self._get_model(DeletedMessageBatch, "DELETE", _batch_path(batch_id))

    def results_lines(
        self, results_url: str, *, betas: Sequence[str] = ()
    ) -> AbstractContextManager[Iterator[bytes]]:
        """Stream a batch's results ``.jsonl``: a context manager giving raw lines.

        ``results_url`` is the batch's absolute ``results_url`` (§1.1: take it, don't build
        it). It must be on the API's own scheme, host and port, else
        ``errors.ForeignResultsURLError`` is raised now, before any request: the key is
        never sent elsewhere. Opening the stream retries like ``retrieve``; a transport
        error after lines started arriving raises ``errors.ResultsStreamError`` (download
        again; ingest by ``custom_id`` is idempotent). The response is always closed when
        the ``with`` block ends, however it ends. Lines are not in request order.
        """
        url = self._same_origin(results_url)
        self._ensure_usable()
        return self._open_results(url, _version_headers(betas, None))

    def count_tokens(
        self,
        params: Mapping[str, Any],
        *,
        betas: Sequence[str] = (),
        api_version: str | None = None,
    ) -> int:
        """Input tokens for one request's ``params`` (``POST /v1/messages/count_tokens``).

        Only the fields the endpoint accepts (``COUNT_TOKENS_FIELDS``) are sent.
        """
        body = orjson.dumps({k: v for k, v in params.items() if k in COUNT_TOKENS_FIELDS})
        headers = {"content-type": "application/json", **_version_headers(betas, api_version)}
        counted = self._get_model(
            MessageTokensCount, "POST", COUNT_TOKENS_PATH, headers=headers, body=body
        )
        return counted.input_tokens

    # -- sending ---------------------------------------------------------------------

    def _get_model(
        self,
        model: type[M],
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> M:
        content = None if body is None else (lambda: body)
        build = self._builder(method, path, params=params, headers=headers, content=content)
        response = self._send(build)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise errors.APIError(
                f"{method} {path} answered {response.status_code} with a body that is not a "
                f"{model.__name__}; is the base URL {self._base_url} really the API?"
            ) from exc

    def _builder(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        content: Callable[[], Iterable[bytes] | bytes] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Callable[[int], httpx.Request]:
        """A factory of fresh requests, one per attempt (a streamed body is single-use)."""

        def build(attempt: int) -> httpx.Request:
            return self._http.build_request(
                method,
                url,
                params=params,
                headers={**self._common_headers(attempt), **(headers or {})},
                content=None if content is None else content(),
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )

        return build

    def _common_headers(self, attempt: int) -> dict[str, str]:
        # Both auth headers: the docs take x-api-key, SDK >= 2.0 sends Bearer (§1.2).
        return {
            "authorization": f"Bearer {self._api_key}",
            "x-api-key": self._api_key,
            "anthropic-version": self._api_version,
            "user-agent": self._user_agent,
            "accept": "application/json",
            "x-retry-count": str(attempt),
        }

    def _send(
        self,
        build: Callable[[int], httpx.Request],
        *,
        create: bool = False,
        can_resend: bool = True,
        stream: bool = False,
    ) -> httpx.Response:
        """Send with retries; return the 2xx response or raise the last mapped error."""
        self._ensure_usable()
        attempt = 0
        while True:
            outcome = self._attempt(build(attempt), create=create, stream=stream)
            if isinstance(outcome, httpx.Response):
                return outcome
            if not (outcome.retryable and can_resend and attempt < self._max_retries):
                raise outcome.error from outcome.cause
            self._sleep(
                retry.backoff_delay(attempt, retry_after=outcome.retry_after_s, rng=self._rng)
            )
            attempt += 1

    def _attempt(
        self, request: httpx.Request, *, create: bool, stream: bool
    ) -> httpx.Response | _Failure:
        try:
            response = self._http.send(request, stream=stream)
        except httpx.RequestError as exc:
            return self._transport_failure(exc, request, create=create)
        if response.is_success:
            return response
        try:
            response.read()  # the error envelope; already read unless streaming
        except httpx.RequestError as exc:
            return self._transport_failure(exc, request, create=create)
        finally:
            response.close()
        return self._status_failure(response, create=create)

    def _transport_failure(
        self, exc: httpx.RequestError, request: httpx.Request, *, create: bool
    ) -> _Failure:
        where = f"{request.method} {request.url.path}"
        detail = f"{type(exc).__name__}: {self._redact(str(exc))}"
        if create and not retry.create_may_retry_transport(exc):
            return _Failure(_ambiguous_create(detail, answered=False), exc, retryable=False)
        error: errors.APIError
        if isinstance(exc, httpx.TimeoutException):
            error = errors.APITimeoutError(f"{where} timed out ({detail}); retry later.")
        else:
            error = errors.APIConnectionError(
                f"{where} failed ({detail}); check the network and the base URL {self._base_url}."
            )
        return _Failure(error, exc, retryable=retry.is_transient(error))

    def _status_failure(self, response: httpx.Response, *, create: bool) -> _Failure:
        error = self._status_error(response)
        if not create:
            retryable = retry.is_transient(error)
        elif retry.create_outcome_unknown(error.status_code):
            return _Failure(_ambiguous_create(str(error), answered=True), error, retryable=False)
        else:
            retryable = retry.create_may_retry_status(error.status_code, error.should_retry)
        return _Failure(error, None, retryable, error.retry_after_s)

    def _status_error(self, response: httpx.Response) -> errors.APIStatusError:
        status = response.status_code
        error_type, message, request_id = parse_error_envelope(response.content)
        text = self._redact(message or response.reason_phrase or "no details")
        text += f" [{response.request.method} {response.request.url.path}]"
        if status in _STATUS_HINTS:
            text += f"; {_STATUS_HINTS[status]}"
        return _status_error_class(status)(
            text,
            status_code=status,
            error_type=error_type,
            request_id=request_id or response.headers.get("request-id"),
            retry_after_s=retry.parse_retry_after(response.headers),
            should_retry=retry.parse_should_retry(response.headers.get("x-should-retry")),
        )

    # -- results ---------------------------------------------------------------------

    def _same_origin(self, results_url: str) -> httpx.URL:
        try:
            url = self._base_url.join(results_url)
        except httpx.InvalidURL as exc:
            shown = self._redact(results_url)
            raise errors.ForeignResultsURLError(f"results_url {shown!r} is invalid.") from exc
        if _origin(url) != _origin(self._base_url):
            shown = self._redact(str(url.copy_with(query=None)))
            raise errors.ForeignResultsURLError(
                f"results_url {shown} is not on the API host "
                f"{_origin_text(self._base_url)}; refused so the API key is not sent there. "
                "A proxy or simulator must return results_url on its own host."
            )
        return url

    @contextmanager
    def _open_results(self, url: httpx.URL, extra: Mapping[str, str]) -> Iterator[Iterator[bytes]]:
        headers = {"accept": "application/x-jsonl", **extra}
        try:
            response = self._send(self._builder("GET", url, headers=headers), stream=True)
        except errors.APIStatusError as exc:
            if 300 <= exc.status_code < 400:
                # Redirects are never followed: the key would go along to wherever.
                raise errors.ForeignResultsURLError(
                    f"the results download answered {exc.status_code} (a redirect); not "
                    "followed, so the API key is not sent to another host"
                ) from exc
            raise
        lines = _ResultLines(response)
        try:
            yield lines
        finally:
            lines.close()

    # -- helpers ---------------------------------------------------------------------

    def _ensure_usable(self) -> None:
        if self._state is ClientState.CLOSED:
            raise RuntimeError("This BatchesClient has been closed; create a new one.")
        self._state = ClientState.OPEN

    def _redact(self, text: str) -> str:
        # A server or proxy may echo the key back in an error body; never pass it on.
        return text.replace(self._api_key, _REDACTED)


class _ResultLines(Iterator[bytes]):
    """Raw result lines over an open streamed response; maps mid-stream failures."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._lines = jsonl.iter_lines(response.iter_bytes())
        self._closed = False

    def __next__(self) -> bytes:
        if self._closed:
            raise RuntimeError("The results stream is closed: iterate inside its `with` block.")
        try:
            return next(self._lines)
        except httpx.RequestError as exc:
            raise errors.ResultsStreamError(
                f"The results download from {self._response.request.url.path} broke off "
                f"({type(exc).__name__}); download it again (ingest is idempotent)."
            ) from exc

    def close(self) -> None:
        self._closed = True
        self._response.close()


def _ambiguous_create(detail: str, *, answered: bool) -> errors.AmbiguousCreateError:
    return errors.AmbiguousCreateError(
        f"The batch create got no usable answer ({detail}); the batch may exist: "
        "reconcile by listing batches before sending it again.",
        answered=answered,
    )


def _status_error_class(status: int) -> type[errors.APIStatusError]:
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    return errors.InternalServerError if status >= 500 else errors.APIStatusError


def _batch_path(batch_id: str) -> str:
    if not batch_id:
        raise ValueError("batch_id is empty")
    return f"{BATCHES_PATH}/{quote(batch_id, safe='')}"


def _api_base_url(base_url: str) -> httpx.URL:
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise errors.ConfigError(f"The API base URL {base_url!r} is invalid.") from exc
    if url.scheme not in _DEFAULT_PORTS or not url.host:
        raise errors.ConfigError(
            f"The API base URL {base_url!r} is not an http(s) URL; check ANTHROPIC_BASE_URL."
        )
    return url


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _origin_text(url: httpx.URL) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def _version_headers(betas: Sequence[str], api_version: str | None) -> dict[str, str]:
    """Per-call headers: a job's own ``anthropic-version`` and ``anthropic-beta``."""
    headers: dict[str, str] = {}
    if api_version is not None:
        headers["anthropic-version"] = api_version
    if betas:
        headers["anthropic-beta"] = ",".join(betas)
    return headers
