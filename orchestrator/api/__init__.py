"""Client and wire models for Anthropic's Message Batches API.

The only package that imports httpx (enforced by ruff TID251). ``BatchesClient`` talks
HTTP; ``models`` parses what comes back; ``jsonl`` frames the results stream;
``retry`` holds the retry policy.
"""

from __future__ import annotations

from orchestrator.api.body import CreateRequests
from orchestrator.api.client import BatchesClient, ClientState
from orchestrator.api.jsonl import iter_lines
from orchestrator.api.models import (
    BatchResult,
    CacheCreation,
    CanceledResult,
    DeletedMessageBatch,
    ErrorDetail,
    ErroredResult,
    ErrorResponse,
    ExpiredResult,
    Message,
    MessageBatch,
    MessageBatchPage,
    MessageTokensCount,
    RequestCounts,
    ResultLine,
    SucceededResult,
    Usage,
    parse_error_envelope,
    parse_result_line,
)

__all__ = [
    "BatchResult",
    "BatchesClient",
    "CacheCreation",
    "CanceledResult",
    "ClientState",
    "CreateRequests",
    "DeletedMessageBatch",
    "ErrorDetail",
    "ErrorResponse",
    "ErroredResult",
    "ExpiredResult",
    "Message",
    "MessageBatch",
    "MessageBatchPage",
    "MessageTokensCount",
    "RequestCounts",
    "ResultLine",
    "SucceededResult",
    "Usage",
    "iter_lines",
    "parse_error_envelope",
    "parse_result_line",
]
