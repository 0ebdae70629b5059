"""Response helpers shared by every route: JSON, the error envelope, common headers.

§1.5: ``request-id`` (``req_`` + 24) and ``anthropic-organization-id`` go on EVERY
response, errors and dropped streams included; error bodies repeat the id (§3.3).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .results import StreamCut
from .state import SimulatorState
from .validation import InvalidRequest


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error_response(
    request_id: str,
    status: int,
    error_type: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """§3.3: ``{"type":"error","error":{"type","message"},"request_id"}``."""
    body = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }
    response = json_response(body, status)
    response.headers.update(headers or {})
    return response


def request_id_of(request: Request) -> str:
    return str(request.scope["state"]["request_id"])


def invalid_response(
    request: Request, exc: InvalidRequest, headers: dict[str, str] | None = None
) -> Response:
    return error_response(request_id_of(request), exc.status, exc.error_type, exc.message, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes (§0: 413) without buffering past it."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> InvalidRequest:
    message = f"Request exceeds the maximum allowed number of bytes ({limit})."
    return InvalidRequest(message, status=413, error_type="request_too_large")


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"There was an error parsing the body of your request: {exc}") from exc


class ApiHeadersMiddleware:
    """Stamps the common headers, turns crashes into api_error, drops cut streams."""

    def __init__(self, app: ASGIApp, state: SimulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope_state = scope.setdefault("state", {})
        scope_state["request_id"] = request_id = self.state.new_request_id()
        started = False

        async def stamped(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self._stamp(MutableHeaders(scope=message), request_id, scope_state)
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        except StreamCut:
            return  # the server closes the connection: the client sees a truncated body
        except Exception:
            if started:
                raise
            response = error_response(request_id, 500, "api_error", "Internal server error")
            await response(scope, receive, stamped)

    def _stamp(self, headers: MutableHeaders, request_id: str, scope_state: dict[str, Any]) -> None:
        headers["request-id"] = request_id
        headers["anthropic-organization-id"] = self.state.config.organization_id
        if scope_state.get("authenticated"):
            headers["anthropic-workspace-id"] = self.state.config.workspace_id
        for name, value in scope_state.get("extra_headers", {}).items():
            headers.setdefault(name, value)


class LostResponse(Response):
    """§8: the work was done but the response never arrives (headers, then a drop)."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        raise StreamCut("create response lost on purpose (lost_create_share)")
