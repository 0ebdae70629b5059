"""Every knob of the simulator, with defaults that match the real API (§0, §3.2, §7)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: §0: the batch body limit, enforced as 413 request_too_large.
MAX_BODY_BYTES = 256_000_000
#: §7.1: the Messages API body limit (also used for count_tokens).
MAX_MESSAGE_BODY_BYTES = 32_000_000
#: §6.4: expires_at = created_at + 24 h.
EXPIRY_S = 86_400.0
#: §5.6: results are downloadable for 29 days after created_at.
RETENTION_S = 29 * 86_400.0
#: §1.3: the two versions the API accepts.
API_VERSIONS = ("2023-06-01", "2026-10-21")
#: §1.3: the version under which temperature/top_p/top_k are rejected.
STRICT_SAMPLING_VERSION = "2026-10-21"

SERVER_ERROR_TYPES = frozenset(
    {
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
    }
)


class SimulatorConfig(BaseModel):
    """Knobs; replace at runtime with ``state.configure(**changes)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Seeds every random choice: ids, processing times, outcomes, faults, shuffles.
    seed: int = 0
    #: Mean time from create to ended, in seconds (§6.2).
    processing_seconds: float = Field(default=30.0, ge=0.0)
    #: Processing time is drawn uniformly from mean × (1 ± jitter).
    processing_jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    #: §6.4: expires_at = created_at + expiry_seconds.
    expiry_seconds: float = Field(default=EXPIRY_S, gt=0.0)
    #: §5.6: archived_at = created_at + retention_seconds (results gone after that).
    retention_seconds: float = Field(default=RETENTION_S, gt=0.0)
    #: Overrides retention_seconds when set (a shorter name for tests).
    archive_after_seconds: float | None = Field(default=None, gt=0.0)
    #: §6.3: time from cancel to ended.
    cancel_seconds: float = Field(default=1.0, ge=0.0)
    #: §6.3: share of unfinished requests that were in flight and finish anyway.
    cancel_inflight_share: float = Field(default=0.1, ge=0.0, le=1.0)
    #: error type -> share of requests that end errored with it (§2.5).
    errored_share: dict[str, float] = Field(default_factory=dict)
    #: Share of requests that are "slow" and come back expired (§6.4, simplified).
    expired_share: float = Field(default=0.0, ge=0.0, le=1.0)
    #: Share of structured answers (output_config json_schema or a forced tool) that come
    #: back invalid on purpose: JSON cut in half, or a tool input missing a required
    #: property. Drawn per custom_id, so a retry under a new custom_id draws afresh.
    invalid_output_share: float = Field(default=0.0, ge=0.0, le=1.0)
    #: Requests per minute across the batch endpoints; None = unlimited (§7.4).
    rpm_limit: int | None = Field(default=None, ge=1)
    #: Max requests in processing across non-ended batches; None = unlimited (§7.4).
    queue_limit: int | None = Field(default=None, ge=1)
    #: Per-HTTP-call probabilities of an injected 408 / 429 / 500 / 529 (seeded).
    fault_408_share: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_429_share: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_500_share: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_529_share: float = Field(default=0.0, ge=0.0, le=1.0)
    #: retry-after (seconds) sent with injected and rate-limit 429s.
    fault_retry_after_seconds: int = Field(default=1, ge=0)
    #: Probability that a results download is cut mid-stream (§10.13).
    cut_results_share: float = Field(default=0.0, ge=0.0, le=1.0)
    #: Share of creates answered 500 (§8); of those, ``create_500_made_share`` made the
    #: batch all the same (the client can't tell which).
    create_500_share: float = Field(default=0.0, ge=0.0, le=1.0)
    create_500_made_share: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Probability that a create succeeds server-side but its response is lost (§8).
    lost_create_share: float = Field(default=0.0, ge=0.0, le=1.0)
    #: A new batch appears in list pages only this many seconds after its creation
    #: (retrieve sees it at once): the lag a lost create's reconciliation must survive.
    list_lag_seconds: float = Field(default=0.0, ge=0.0)
    #: Extra latency added to every API response, in real seconds.
    slow_response_seconds: float = Field(default=0.0, ge=0.0)
    #: §0: 413 request_too_large above this many body bytes on create.
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1)
    #: 413 above this many body bytes on /v1/messages and count_tokens.
    max_message_body_bytes: int = Field(default=MAX_MESSAGE_BODY_BYTES, ge=1)
    #: Accepted API keys; None accepts any non-empty key.
    api_keys: frozenset[str] | None = None
    #: Sent as anthropic-organization-id on every response.
    organization_id: str = "00000000-0000-4000-8000-000000000000"
    #: Sent as anthropic-workspace-id on authenticated responses.
    workspace_id: str = "wrkspc_01SimulatorWorkspace00000"
    #: Lines per chunk of the streamed results body.
    results_chunk_lines: int = Field(default=1024, ge=1)

    @model_validator(mode="after")
    def _check_outcome_mix(self) -> SimulatorConfig:
        unknown = set(self.errored_share) - SERVER_ERROR_TYPES - {"invalid_request_error"}
        if unknown:
            raise ValueError(f"errored_share: unknown error types {sorted(unknown)}")
        if any(not 0.0 <= share <= 1.0 for share in self.errored_share.values()):
            raise ValueError("errored_share: every share must be within 0..1")
        if sum(self.errored_share.values()) + self.expired_share > 1.0:
            raise ValueError("errored_share + expired_share must not exceed 1")
        return self

    @property
    def archive_seconds(self) -> float:
        """Seconds from created_at to archived_at."""
        return self.archive_after_seconds or self.retention_seconds
