"""The Starlette app: the Message Batches endpoints plus Messages and count_tokens (§1.1).

Every API call passes the same gate, in this order: ledger count, auth (401), version
(400), slow_response_seconds, injected faults (408/429/500/529), batch RPM (429). Unknown
paths are 404 not_found_error. ``/_simulator/*`` is the test surface (same key check).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from . import model
from .clock import Clock, ManualClock
from .config import API_VERSIONS, SimulatorConfig
from .faults import ERROR_TYPE_BY_STATUS, MESSAGES
from .ids import message_id, rfc3339
from .ratelimit import RpmWindow
from .responses import (
    ApiHeadersMiddleware,
    LostResponse,
    error_response,
    invalid_response,
    json_response,
    parse_json,
    read_body,
    request_id_of,
)
from .results import result_chunks
from .state import LIST_LIMIT_DEFAULT, NotFound, RateLimited, SimulatorState
from .tokens import count_input_tokens
from .validation import (
    UNKNOWN_MODEL,
    InvalidRequest,
    check_create_body,
    check_sampling,
    params_problem,
)

Handler = Callable[[Request], Awaitable[Response]]
BATCH_ENDPOINTS = frozenset({"create", "retrieve", "list", "cancel", "delete", "results"})


class SimulatorApi:
    """Route handlers bound to one SimulatorState."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.rpm = RpmWindow()

    # -- the gate ---------------------------------------------------------------------

    def endpoint(self, name: str, handler: Handler) -> Handler:
        """Wrap a handler with the gate, the error mapping and the ledger."""

        async def gated(request: Request) -> Response:
            self.state.ledger.record_call(name)
            try:
                await self._admit(request, name)
                response = await handler(request)
            except RateLimited as exc:
                retry = {"retry-after": str(exc.retry_after)} if exc.retry_after > 0 else {}
                response = invalid_response(request, exc, retry)
            except InvalidRequest as exc:
                response = invalid_response(request, exc)
            self.state.ledger.record_response(name, response.status_code)
            return response

        return gated

    async def _admit(self, request: Request, name: str) -> None:
        config, scope_state = self.state.config, request.scope["state"]
        _authenticate(request, config)
        scope_state["authenticated"] = True
        scope_state["version"] = _api_version(request)
        if config.slow_response_seconds:
            await anyio.sleep(config.slow_response_seconds)
        if name in BATCH_ENDPOINTS:
            self._count_rpm(scope_state, config)
        _raise_fault(self.state.faults.next_status(config), config)

    def _count_rpm(self, scope_state: dict[str, object], config: SimulatorConfig) -> None:
        """§7.3/§7.4 (§12.8: we send the requests-* trio on every batch endpoint)."""
        now = self.state.now()
        admission = self.rpm.admit(now, config.rpm_limit)
        scope_state["extra_headers"] = {
            "anthropic-ratelimit-requests-limit": str(admission.limit),
            "anthropic-ratelimit-requests-remaining": str(admission.remaining),
            "anthropic-ratelimit-requests-reset": rfc3339(admission.reset_at),
        }
        if not admission.admitted:
            message = (
                f"Number of request per minute has exceeded the rate limit ({admission.limit})."
            )
            raise RateLimited(message, admission.retry_after(now))

    # -- batches ----------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        config = self.state.config
        raw = await read_body(request, config.max_body_bytes)
        version = request.scope["state"]["version"]
        # Checking and sketching every request of a large body takes seconds: on worker
        # threads, so the server goes on answering other calls (results downloads,
        # polls) meanwhile, as the real API does.
        pairs = await anyio.to_thread.run_sync(_checked_create_body, raw, version)
        answer_500 = self.state.faults.chance(config.create_500_share)
        if answer_500 and not self.state.faults.chance(config.create_500_made_share):
            raise InvalidRequest(MESSAGES[500], status=500, error_type=ERROR_TYPE_BY_STATUS[500])
        batch = await anyio.to_thread.run_sync(
            self.state.create_batch, pairs, _betas(request), version
        )
        if answer_500:  # made, yet answered 500: the client can't know it exists
            raise InvalidRequest(MESSAGES[500], status=500, error_type=ERROR_TYPE_BY_STATUS[500])
        payload = self.state.batch_json(batch, _base_url(request))
        if self.state.faults.chance(self.state.config.lost_create_share):
            self.state.ledger.lost_responses.add(batch.id)
            return LostResponse(orjson.dumps(payload))
        return json_response(payload)

    async def retrieve(self, request: Request) -> Response:
        batch = self.state.get(request.path_params["batch_id"])
        return json_response(self.state.batch_json(batch, _base_url(request)))

    async def list(self, request: Request) -> Response:
        """§4.2: the page shape the SDK's auto-pagination follows."""
        query = request.query_params
        limit = _int_query(query.get("limit"), LIST_LIMIT_DEFAULT)
        page, has_more = self.state.list_page(query.get("before_id"), query.get("after_id"), limit)
        data = [self.state.batch_json(batch, _base_url(request)) for batch in page]
        first_id, last_id = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return json_response(
            {"data": data, "has_more": has_more, "first_id": first_id, "last_id": last_id}
        )

    async def cancel(self, request: Request) -> Response:
        batch = self.state.cancel(request.path_params["batch_id"])
        return json_response(self.state.batch_json(batch, _base_url(request)))

    async def delete(self, request: Request) -> Response:
        self.state.delete(request.path_params["batch_id"])
        return json_response(
            {"id": request.path_params["batch_id"], "type": "message_batch_deleted"}
        )

    async def results(self, request: Request) -> Response:
        """§5: JSONL stream; §12.1 before ended -> 400; §12.4 archived -> 404."""
        batch_id, config = request.path_params["batch_id"], self.state.config
        batch = self.state.get(batch_id)
        if self.state.is_archived(batch):
            raise NotFound(f"results of message batch '{batch_id}' have been archived")
        if batch.ended_at is None:
            raise InvalidRequest(
                f"message batch '{batch_id}' is still {batch.processing_status}; results are "
                "available once processing_status is 'ended'"
            )
        cut = (
            self.state.faults.cut_point(len(batch.custom_ids))
            if self.state.faults.chance(config.cut_results_share)
            else None
        )
        chunks = result_chunks(
            batch, batch.seed, self.state.ledger, config.results_chunk_lines, cut
        )
        return StreamingResponse(chunks, media_type="application/x-jsonl")

    # -- messages ---------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        """One non-streaming Messages call, validated synchronously."""
        params = await self._message_params(request, require_max_tokens=True)
        if params.get("stream") is True:
            raise InvalidRequest("stream: streaming is not supported by the simulator")
        prompt = self.state.message_prompt(params)
        msg_id = message_id(self.state.config.seed, request_id_of(request))
        return json_response(model.message(prompt, self.state.config.seed, msg_id, "standard"))

    async def count_tokens(self, request: Request) -> Response:
        params = await self._message_params(request, require_max_tokens=False)
        return json_response({"input_tokens": count_input_tokens(params)})

    async def _message_params(
        self, request: Request, *, require_max_tokens: bool
    ) -> dict[str, object]:
        params = parse_json(await read_body(request, self.state.config.max_message_body_bytes))
        if not isinstance(params, dict):
            raise InvalidRequest("Input should be a valid dictionary")
        check_sampling(params, "", request.scope["state"]["version"])
        problem = params_problem(params, _betas(request), require_max_tokens=require_max_tokens)
        model_id = params.get("model")
        if problem and isinstance(model_id, str) and problem == UNKNOWN_MODEL + model_id:
            raise NotFound(problem)
        if problem:
            raise InvalidRequest(problem)
        return params

    # -- test surface -----------------------------------------------------------------

    async def ledger(self, request: Request) -> Response:
        try:  # it lists everything every client sent: the same key check as the API
            _authenticate(request, self.state.config)
        except InvalidRequest as exc:
            return invalid_response(request, exc)
        return json_response(self.state.ledger.to_json())

    async def advance_clock(self, request: Request) -> Response:
        try:
            _authenticate(request, self.state.config)
        except InvalidRequest as exc:
            return invalid_response(request, exc)
        clock = self.state.clock
        if not isinstance(clock, ManualClock):
            return error_response(
                request_id_of(request),
                400,
                "invalid_request_error",
                "the clock is not a ManualClock",
            )
        body = parse_json(await request.body() or b"{}")
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if not isinstance(seconds, int | float) or seconds < 0:
            message = 'expected {"seconds": <non-negative number>}'
            return error_response(request_id_of(request), 400, "invalid_request_error", message)
        return json_response({"now": rfc3339(clock.advance(float(seconds)))})


def _authenticate(request: Request, config: SimulatorConfig) -> None:
    """§1.2: x-api-key wins over Authorization: Bearer when both are sent."""
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise InvalidRequest(
            "x-api-key header is required", status=401, error_type="authentication_error"
        )
    if config.api_keys is not None and key not in config.api_keys:
        raise InvalidRequest("invalid x-api-key", status=401, error_type="authentication_error")


def _api_version(request: Request) -> str:
    version = request.headers.get("anthropic-version")
    if not version:
        raise InvalidRequest("anthropic-version: header is required")
    if version not in API_VERSIONS:
        raise InvalidRequest(
            f"anthropic-version: unsupported version '{version}'; "
            f"use one of {', '.join(API_VERSIONS)}"
        )
    return version


def _raise_fault(status: int | None, config: SimulatorConfig) -> None:
    if status is None:
        return
    message = MESSAGES.get(status, f"Simulated {status}.")
    if status == 429:
        raise RateLimited(message, config.fault_retry_after_seconds)
    raise InvalidRequest(message, status=status, error_type=ERROR_TYPE_BY_STATUS[status])


def _betas(request: Request) -> frozenset[str]:
    """§1.4: anthropic-beta values; unknown and obsolete ones are ignored."""
    header = request.headers.get("anthropic-beta", "")
    return frozenset(part.strip() for part in header.split(",") if part.strip())


def _base_url(request: Request) -> str:
    """§1.1: results_url must point back at this server, as the client reached it."""
    return str(request.base_url).rstrip("/")


def _int_query(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"limit: Input should be a valid integer, got '{raw}'") from None


def _checked_create_body(raw: bytes, version: str) -> list[tuple[str, dict[str, Any]]]:
    return check_create_body(parse_json(raw), version)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    error_type = {404: "not_found_error", 405: "invalid_request_error"}.get(status, "api_error")
    message = "Not Found" if status == 404 else str(getattr(exc, "detail", "error"))
    return error_response(request_id_of(request), status, error_type, message)


def create_app(config: SimulatorConfig, clock: Clock | None = None) -> Starlette:
    """The simulator as an ASGI app; ``app.state.simulator`` is its SimulatorState."""
    state = SimulatorState(config, clock)
    api = SimulatorApi(state)
    batches = "/v1/messages/batches"
    routes = [
        Route(batches, api.endpoint("create", api.create), methods=["POST"]),
        Route(batches, api.endpoint("list", api.list), methods=["GET"]),
        Route(batches + "/{batch_id}", api.endpoint("retrieve", api.retrieve), methods=["GET"]),
        Route(batches + "/{batch_id}", api.endpoint("delete", api.delete), methods=["DELETE"]),
        Route(batches + "/{batch_id}/cancel", api.endpoint("cancel", api.cancel), methods=["POST"]),
        Route(
            batches + "/{batch_id}/results", api.endpoint("results", api.results), methods=["GET"]
        ),
        Route("/v1/messages", api.endpoint("messages", api.messages), methods=["POST"]),
        Route(
            "/v1/messages/count_tokens",
            api.endpoint("count_tokens", api.count_tokens),
            methods=["POST"],
        ),
        Route("/_simulator/ledger", api.ledger, methods=["GET"]),
        Route("/_simulator/clock/advance", api.advance_clock, methods=["POST"]),
    ]
    middleware = [Middleware(ApiHeadersMiddleware, state=state)]
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers={HTTPException: _http_error}
    )
    app.state.simulator = state
    return app
