"""A local Message Batches API that the official ``anthropic`` SDK cannot tell apart.

Use it in-process (``create_app`` + ``httpx.ASGITransport``), in a background thread
(``with SimulatorServer(config) as sim: ... sim.base_url``) or in the foreground
(``serve`` / ``orchestrator simulate``). Behaviour follows
docs/message-batches-api.md; section numbers in comments (§N.M) refer to it.

Choices for the doc's open questions (§12) and other simplifications:

* §12.1 results before ``ended`` -> 400 invalid_request_error.
* §12.2 second cancel while canceling -> 200, batch unchanged; cancel on ended -> 400.
* §12.3 delete while in_progress/canceling -> 400; afterwards retrieve/results/delete 404.
* §12.4 results of an archived batch -> 404 not_found_error; ``results_url`` stays set.
* §12.5 batch-unsupported params (stream, speed, max_tokens 0, store, ...) fail the
  whole create with 400 (sync), like temperature/top_p/top_k under 2026-10-21.
* §12.6 queue limit exceeded -> 429 rate_limit_error with retry-after (seconds until the
  next in-flight batch ends).
* §12.8 the ``anthropic-ratelimit-requests-*`` trio is sent on every batch endpoint.
* §12.9 ``request_id`` inside errored result lines is null.
* §4.1 list: before_id + after_id -> 400; limit outside 1..1000 -> 400; a cursor that
  names no stored batch is not an error: ids sort in creation order, so the cursor
  positions the page by id (a deleted cursor batch keeps pagination working).
* §6.2-6.4 processing is all-or-nothing: requests leave ``processing`` together at
  ``ended_at``. ``expired_share`` requests come back expired when the batch ends (not at
  expires_at); a batch whose drawn processing time exceeds ``expiry_seconds`` ends at
  expires_at with every valid request expired.
* §6.3 cancel: ``cancel_inflight_share`` of the requests were "in flight" and keep their
  outcome (succeeded/errored); the rest are canceled. If the batch would have ended on
  its own before ``cancel_seconds`` elapse, it ends normally.
* Tokens: 1 token = 4 characters (rounded up) for input, output and truncation.
* Replies (model.py): a forced tool (tool_choice tool/any) -> one tool_use block;
  ``output_config.format`` json_schema -> one text block of compact JSON that validates
  against the schema (cut at 4 × max_tokens chars with stop_reason max_tokens); else a
  label or a sentence. A malformed ``output_config`` ends the request errored
  (invalid_request_error). Values are seeded by (seed, params).
* ``invalid_output_share``: that share of structured answers, drawn per custom_id (a
  retry under a new custom_id draws afresh), is invalid on purpose: the JSON is cut in
  half (stop_reason max_tokens), a tool input lacks one required property (or is a
  JSON string when none is required). /v1/messages answers are always valid.
* Prompt caching (caching.py): with ``cache_control`` breakpoints the prefix up to the
  last one is a cache read if this simulator saw it before (at most 100,000 prefixes
  remembered, no time expiry, no minimum length), else a cache write in the 5m or 1h
  bucket by its ttl; ``input_tokens`` is the rest. A batch decides in request order at
  create.
* Unknown model: errored invalid_request_error in a batch, 404 on /v1/messages.
* Dropped connections (lost create, cut results) need a real server (SimulatorServer);
  over ``httpx.ASGITransport`` the client just sees a short body.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .clock import Clock, ManualClock, RealClock
from .config import SimulatorConfig
from .ledger import Ledger, LedgerBatch, ServedLine

if TYPE_CHECKING:
    from .app import create_app
    from .server import SimulatorServer, serve
    from .state import SimulatorState

#: Loaded on first use: the web server and its app (starlette, uvicorn) cost every
#: command of the CLI, which registers ``simulate``, some 50 ms to import.
_LAZY = {
    "create_app": ".app",
    "SimulatorServer": ".server",
    "serve": ".server",
    "SimulatorState": ".state",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Clock",
    "Ledger",
    "LedgerBatch",
    "ManualClock",
    "RealClock",
    "ServedLine",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorState",
    "create_app",
    "serve",
]
