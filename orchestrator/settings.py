"""Configuration from the environment.

Every option has an environment variable: the two the official SDK uses
(``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``) and an ``ORCHESTRATOR_*`` twin
for everything else (``poll_interval_s`` <- ``ORCHESTRATOR_POLL_INTERVAL``).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.domain.contract import API_VERSIONS, DEFAULT_API_VERSION, DEFAULT_BASE_URL
from orchestrator.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///orchestrator.db"
POLL_INTERVAL_S = 30.0
REQUEST_TIMEOUT_S = 600.0
CONNECT_TIMEOUT_S = 5.0
MAX_RETRIES = 4
#: A lease lasts this long without a heartbeat; its holder renews it every third of it.
LEASE_TTL_S = 30.0
#: How long a create waits for the API's answer before its outcome is reconciled.
CREATE_TIMEOUT_S = 30.0
INGEST_CHUNK_ROWS = 1000
#: Window before a lost create's intent in which a listed batch may be ours.
RECONCILE_SKEW_S = 30.0
#: Requests in the API's processing queue at most (the Start tier's limit, §7.4).
MAX_REQUESTS_IN_FLIGHT = 200_000
#: Creates per minute at most, across every worker on the store (under the RPM limit).
CREATES_PER_MINUTE = 50
#: How long ``orchestrator run`` keeps trying an API it cannot reach before giving up.
UNREACHABLE_TIMEOUT_S = 300.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """All options; see the README's configuration table."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    api_key: SecretStr | None = Field(default=None, validation_alias=_env("ANTHROPIC_API_KEY"))
    base_url: str = Field(default=DEFAULT_BASE_URL, validation_alias=_env("ANTHROPIC_BASE_URL"))
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL, validation_alias=_env("ORCHESTRATOR_DATABASE_URL")
    )
    poll_interval_s: float = Field(
        default=POLL_INTERVAL_S, gt=0, validation_alias=_env("ORCHESTRATOR_POLL_INTERVAL")
    )
    api_version: str = Field(
        default=DEFAULT_API_VERSION, validation_alias=_env("ORCHESTRATOR_API_VERSION")
    )
    request_timeout_s: float = Field(
        default=REQUEST_TIMEOUT_S, gt=0, validation_alias=_env("ORCHESTRATOR_REQUEST_TIMEOUT")
    )
    create_timeout_s: float = Field(
        default=CREATE_TIMEOUT_S, gt=0, validation_alias=_env("ORCHESTRATOR_CREATE_TIMEOUT")
    )
    connect_timeout_s: float = Field(
        default=CONNECT_TIMEOUT_S, gt=0, validation_alias=_env("ORCHESTRATOR_CONNECT_TIMEOUT")
    )
    max_retries: int = Field(
        default=MAX_RETRIES, ge=0, validation_alias=_env("ORCHESTRATOR_MAX_RETRIES")
    )
    lease_ttl_s: float = Field(
        default=LEASE_TTL_S, gt=0, validation_alias=_env("ORCHESTRATOR_LEASE_TTL")
    )
    ingest_chunk_rows: int = Field(
        default=INGEST_CHUNK_ROWS, ge=1, validation_alias=_env("ORCHESTRATOR_INGEST_CHUNK_ROWS")
    )
    reconcile_skew_s: float = Field(
        default=RECONCILE_SKEW_S, ge=0, validation_alias=_env("ORCHESTRATOR_RECONCILE_SKEW")
    )
    worker_id: str | None = Field(default=None, validation_alias=_env("ORCHESTRATOR_WORKER_ID"))
    max_requests_in_flight: int = Field(
        default=MAX_REQUESTS_IN_FLIGHT,
        ge=1,
        validation_alias=_env("ORCHESTRATOR_MAX_REQUESTS_IN_FLIGHT"),
    )
    creates_per_minute: int = Field(
        default=CREATES_PER_MINUTE, ge=1, validation_alias=_env("ORCHESTRATOR_CREATES_PER_MINUTE")
    )
    unreachable_timeout_s: float = Field(
        default=UNREACHABLE_TIMEOUT_S,
        gt=0,
        validation_alias=_env("ORCHESTRATOR_UNREACHABLE_TIMEOUT"),
    )
    #: None: each command picks (``run`` shows warnings only, the daemon narrates at INFO).
    log_level: str | None = Field(default=None, validation_alias=_env("ORCHESTRATOR_LOG_LEVEL"))

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
        return level

    @field_validator("api_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value not in API_VERSIONS:
            raise ValueError(f"must be one of {', '.join(sorted(API_VERSIONS))}, not {value!r}")
        return value

    def require_api_key(self) -> str:
        """The key, or a one-line error naming the variable to set."""
        if self.api_key is None or not self.api_key.get_secret_value().strip():
            raise ConfigError(
                "ANTHROPIC_API_KEY is not set: export your Anthropic API key "
                "(or run `orchestrator demo`, which needs none)."
            )
        return self.api_key.get_secret_value().strip()


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides on top."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        variable = _ENV_NAMES.get(name, name)
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{variable}: {message}") from None


#: Each option's environment variable, for error messages.
_ENV_NAMES = {
    name: str(field.validation_alias.choices[0])
    for name, field in Settings.model_fields.items()
    if isinstance(field.validation_alias, AliasChoices)
}
