"""Pure domain logic: job specs, request params, batch planning, outcomes, pricing.

Nothing here touches the job store, HTTP or the scheduler (ruff TID251 enforces part
of it); the store and the steps build on these types. The one SQL use is reading a
user's own input database (``sql_input``, for ``input = "sql:..."``).
"""

from __future__ import annotations

from orchestrator.domain.contract import ENVELOPE_OVERHEAD, body_size
from orchestrator.domain.outcomes import RETRYABLE_ERROR_TYPES, decide, decide_missing
from orchestrator.domain.params import MessageParams, ParamsError, validate_params
from orchestrator.domain.planning import (
    CUSTOM_ID_PATTERN,
    BatchPlanner,
    CustomIdParts,
    PlannedBatch,
    RequestTooLargeForBatch,
    make_custom_id,
    parse_custom_id,
    request_bytes,
)
from orchestrator.domain.pricing import (
    ModelPrice,
    PriceTable,
    UsageCounts,
    approx_input_tokens,
    cost_usd,
    estimate_cost_usd,
)
from orchestrator.domain.spec import (
    BatchingSpec,
    ItemDraft,
    JobSpec,
    LoadedSpec,
    RetrySpec,
    iter_items,
    load_spec,
)
from orchestrator.domain.states import Outcome

__all__ = [
    "CUSTOM_ID_PATTERN",
    "ENVELOPE_OVERHEAD",
    "RETRYABLE_ERROR_TYPES",
    "BatchPlanner",
    "BatchingSpec",
    "CustomIdParts",
    "ItemDraft",
    "JobSpec",
    "LoadedSpec",
    "MessageParams",
    "ModelPrice",
    "Outcome",
    "ParamsError",
    "PlannedBatch",
    "PriceTable",
    "RequestTooLargeForBatch",
    "RetrySpec",
    "UsageCounts",
    "approx_input_tokens",
    "body_size",
    "cost_usd",
    "decide",
    "decide_missing",
    "estimate_cost_usd",
    "iter_items",
    "load_spec",
    "make_custom_id",
    "parse_custom_id",
    "request_bytes",
    "validate_params",
]
