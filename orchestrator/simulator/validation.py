"""Request validation, split the way the real API splits it (§3.2).

* :func:`check_create_body` runs synchronously on create: the envelope, custom_id rules
  and the batch-unsupported params. Failures are a 400 for the whole create.
* :func:`params_problem` is the asynchronous, per-request check: its message becomes an
  ``errored`` result with ``invalid_request_error`` once the batch ends. Paths in these
  messages are relative to ``params`` (§3.2).
"""

from __future__ import annotations

import re
from typing import Any

from .config import STRICT_SAMPLING_VERSION
from .models import max_output_tokens

#: §0: requests per batch.
MAX_REQUESTS = 100_000
#: §0: the custom_id pattern.
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
CUSTOM_ID_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"
#: §1.3: removed under 2026-10-21.
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
#: §3.2: params a batch refuses outright ("returns a validation error").
BATCH_UNSUPPORTED = ("speed", "store", "previous_thread_event_id", "cache_hint", "context_hint")
BLOCK_TYPES = frozenset(
    {"text", "image", "document", "search_result", "tool_use", "tool_result"}
    | {"thinking", "redacted_thinking", "server_tool_use", "web_search_tool_result"}
    | {"web_fetch_tool_result", "code_execution_tool_result", "container_upload"}
    | {"bash_code_execution_tool_result", "text_editor_code_execution_tool_result"}
    | {"tool_search_tool_result", "tool_reference", "mcp_tool_use", "mcp_tool_result"}
)
#: Prefix of the unknown-model message (a 404 on /v1/messages, errored in a batch).
UNKNOWN_MODEL = "model: "
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


class InvalidRequest(Exception):
    """A synchronous 4xx; ``message`` is what the error envelope carries."""

    def __init__(
        self, message: str, *, status: int = 400, error_type: str = "invalid_request_error"
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type


def check_create_body(body: object, version: str) -> list[tuple[str, dict[str, Any]]]:
    """Validate a create body (§3.2, sync rows) and return ``(custom_id, params)`` pairs."""
    if not isinstance(body, dict):
        raise InvalidRequest("Input should be a valid dictionary")
    requests = body.get("requests")
    if requests is None:
        raise InvalidRequest("requests: Field required")
    if not isinstance(requests, list):
        raise InvalidRequest("requests: Input should be a valid list")
    if not 1 <= len(requests) <= MAX_REQUESTS:
        bound = "at least 1 item" if not requests else f"at most {MAX_REQUESTS} items"
        raise InvalidRequest(
            f"requests: List should have {bound} after validation, not {len(requests)}"
        )
    pairs = [_check_item(item, f"requests.{n}", version) for n, item in enumerate(requests)]
    _check_unique([custom_id for custom_id, _ in pairs])
    return pairs


def _check_item(item: object, path: str, version: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{path}: Input should be a valid dictionary")
    for field in ("custom_id", "params"):
        if field not in item:
            raise InvalidRequest(f"{path}.{field}: Field required")
    extra = set(item) - {"custom_id", "params"}
    if extra:
        raise InvalidRequest(f"{path}.{sorted(extra)[0]}: Extra inputs are not permitted")
    custom_id, params = item["custom_id"], item["params"]
    if not isinstance(custom_id, str):
        raise InvalidRequest(f"{path}.custom_id: Input should be a valid string")
    if not CUSTOM_ID.fullmatch(custom_id):
        raise InvalidRequest(f"{path}.custom_id: String should match pattern '{CUSTOM_ID_PATTERN}'")
    if not isinstance(params, dict):
        raise InvalidRequest(f"{path}.params: Input should be a valid dictionary")
    check_batch_params(params, f"{path}.params", version)
    return custom_id, params


def _check_unique(custom_ids: list[str]) -> None:
    seen: set[str] = set()
    for n, custom_id in enumerate(custom_ids):
        if custom_id in seen:
            raise InvalidRequest(
                f"requests.{n}.custom_id: duplicate custom_id '{custom_id}'; "
                "custom_id must be unique within a batch"
            )
        seen.add(custom_id)


def check_batch_params(params: dict[str, Any], path: str, version: str) -> None:
    """§3.2: params a batch rejects synchronously (§12.5: we fail the whole create)."""
    check_sampling(params, path, version)
    if params.get("stream") is True:
        raise InvalidRequest(f"{path}.stream: streaming is not supported in batches")
    if params.get("max_tokens") == 0 and not isinstance(params.get("max_tokens"), bool):
        raise InvalidRequest(f"{path}.max_tokens: max_tokens: 0 is not supported in batches")
    if params.get("research_preview_2026_02") == "active":
        raise InvalidRequest(f"{path}.research_preview_2026_02: not supported in batches")
    for field in (*BATCH_UNSUPPORTED, "betas"):
        if field in params:
            raise InvalidRequest(f"{path}.{field}: Extra inputs are not permitted")


def check_sampling(params: dict[str, Any], path: str, version: str) -> None:
    """§1.3: temperature/top_p/top_k are 400 under 2026-10-21, even at default values."""
    if version != STRICT_SAMPLING_VERSION:
        return
    for field in SAMPLING_PARAMS:
        if field in params:
            prefix = f"{path}." if path else ""
            raise InvalidRequest(f"{prefix}{field}: Extra inputs are not permitted")


def params_problem(
    params: dict[str, Any], betas: frozenset[str] = frozenset(), *, require_max_tokens: bool = True
) -> str | None:
    """The async validation message for one request's params, or None if it is valid.

    count_tokens passes ``require_max_tokens=False``: it takes no max_tokens.
    """
    return (
        _model_problem(params, betas, require_max_tokens)
        or _messages_problem(params.get("messages"))
        or _system_problem(params.get("system"))
        or _tools_problem(params)
        or _output_config_problem(params.get("output_config"))
    )


def _model_problem(
    params: dict[str, Any], betas: frozenset[str], require_max_tokens: bool
) -> str | None:
    model, max_tokens = params.get("model"), params.get("max_tokens")
    if not isinstance(model, str):
        return "model: Field required" if model is None else "model: Input should be a valid string"
    limit = max_output_tokens(model, betas)
    if limit is None:
        return f"{UNKNOWN_MODEL}{model}"
    if max_tokens is None:
        return "max_tokens: Field required" if require_max_tokens else None
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Input should be a valid integer greater than or equal to 1"
    if max_tokens > limit:
        return (
            f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of "
            f"output tokens for {model}"
        )
    return None


def _messages_problem(messages: object) -> str | None:
    if messages is None:
        return "messages: Field required"
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for n, message in enumerate(messages):
        problem = _message_problem(message, f"messages.{n}")
        if problem:
            return problem
    if messages[0].get("role") != "user":
        return 'messages: first message must use the "user" role'
    return None


def _message_problem(message: object, path: str) -> str | None:
    if not isinstance(message, dict):
        return f"{path}: Input should be a valid dictionary"
    if message.get("role") not in ("user", "assistant"):
        return f"{path}.role: Input should be 'user' or 'assistant'"
    content = message.get("content")
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return (
            f"{path}.content: Field required"
            if content is None
            else f"{path}.content: Input should be a valid list"
        )
    for n, block in enumerate(content):
        problem = block_problem(block, f"{path}.content.{n}")
        if problem:
            return problem
    return None


def block_problem(block: object, path: str) -> str | None:
    """One content block: known type, text has text, image has a usable source."""
    if not isinstance(block, dict):
        return f"{path}: Input should be a valid dictionary"
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        return (
            f"{path}: Input tag '{kind}' found using 'type' does not match any of the "
            f"expected tags: {', '.join(repr(t) for t in sorted(BLOCK_TYPES))}"
        )
    if kind == "text" and not isinstance(block.get("text"), str):
        return f"{path}.text: Field required"
    if kind == "image":
        return _image_problem(block.get("source"), f"{path}.image.source")
    return None


def _image_problem(source: object, path: str) -> str | None:
    if not isinstance(source, dict):
        return f"{path}: Field required"
    kind = source.get("type")
    if kind == "base64":
        if source.get("media_type") not in IMAGE_MEDIA_TYPES:
            return (
                f"{path}.base64.media_type: Input should be {', '.join(sorted(IMAGE_MEDIA_TYPES))}"
            )
        return (
            None if isinstance(source.get("data"), str) else f"{path}.base64.data: Field required"
        )
    if kind == "url":
        return None if isinstance(source.get("url"), str) else f"{path}.url.url: Field required"
    if kind == "file":
        return (
            None
            if isinstance(source.get("file_id"), str)
            else f"{path}.file.file_id: Field required"
        )
    return f"{path}: Input tag '{kind}' found using 'type' does not match any of the expected tags"


def _system_problem(system: object) -> str | None:
    if system is None or isinstance(system, str):
        return None
    if not isinstance(system, list):
        return "system: Input should be a valid string or list"
    for n, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or "text" not in block:
            return f"system.{n}: Input should be a text block"
    return None


def _tools_problem(params: dict[str, Any]) -> str | None:
    tools, choice = params.get("tools"), params.get("tool_choice")
    if tools is not None and not isinstance(tools, list):
        return "tools: Input should be a valid list"
    names = [tool.get("name") for tool in tools or [] if isinstance(tool, dict)]
    if len(names) != len(tools or []) or not all(isinstance(name, str) for name in names):
        return "tools: every tool needs a name"
    if (
        isinstance(choice, dict)
        and choice.get("type") == "tool"
        and choice.get("name") not in names
    ):
        return f"tool_choice.name: tool '{choice.get('name')}' is not in tools"
    if isinstance(choice, dict) and choice.get("type") == "any" and not names:
        return "tool_choice: tool_choice 'any' requires at least one tool"
    return None


def _output_config_problem(config: object) -> str | None:
    """``output_config.format``, when given, must be a json_schema format with a schema."""
    if config is None:
        return None
    if not isinstance(config, dict):
        return "output_config: Input should be a valid dictionary"
    found = config.get("format")
    if found is None:
        return None
    if not isinstance(found, dict):
        return "output_config.format: Input should be a valid dictionary"
    if found.get("type") != "json_schema":
        return "output_config.format.type: Input should be 'json_schema'"
    schema = found.get("schema")
    if not isinstance(schema, dict):
        problem = "Field required" if schema is None else "Input should be a valid dictionary"
        return f"output_config.format.schema: {problem}"
    return None
