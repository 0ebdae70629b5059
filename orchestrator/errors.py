"""Every exception the orchestrator raises on purpose.

The tree::

    OrchestratorError
    ├── ConfigError                  a setting is missing or malformed
    ├── UsageError                   a command was asked for something it cannot do
    ├── SpecError                    a job spec, dataset row or request is unusable
    ├── JobError                     a job operation cannot proceed
    │   ├── JobNotFoundError
    │   ├── JobConflictError         another spec already uses this job name
    │   └── BudgetExceededError      the pre-flight estimate is above budget_usd
    ├── StoreError                   the SQL job store
    │   ├── StoreUnavailableError    cannot connect / locked / gone
    │   ├── StoreDataError           the database refused a value
    │   └── StoreNotAtHeadError      schema is not at the Alembic head
    └── APIError                     anything from the Message Batches API client
        ├── APIConnectionError       transport failure (the request may not have arrived)
        │   └── APITimeoutError
        ├── APIStatusError           an HTTP error response with the API's error envelope
        │   ├── BadRequestError          400 invalid_request_error
        │   ├── AuthenticationError      401 authentication_error
        │   ├── BillingError             402 billing_error
        │   ├── PermissionDeniedError    403 permission_error
        │   ├── NotFoundError            404 not_found_error
        │   ├── RequestTimeoutError      408 (a proxy or the API gave up waiting)
        │   ├── ConflictError            409 conflict_error
        │   ├── RequestTooLargeError     413 request_too_large
        │   ├── RateLimitError           429 rate_limit_error
        │   └── InternalServerError      5xx api_error / timeout_error
        │       └── OverloadedError      529 overloaded_error
        ├── APIUnreachableError      the API stayed unreachable past the run's limit
        ├── AmbiguousCreateError     a create whose outcome is unknown: reconcile, never resend
        ├── ForeignResultsURLError   a results_url on another host (the key is not sent there)
        └── ResultsStreamError       a results download broke off before its end

Errors raised by httpx and SQLAlchemy are mapped at the module boundary
(``raise X(...) from exc``); the original is on ``__cause__``. Messages say what
to do next and never contain the API key.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base class; the docstring of each subclass is its default message."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(OrchestratorError):
    """A setting is missing or malformed."""


class UsageError(OrchestratorError):
    """A command was asked for something it cannot do as given (e.g. export an
    unfinished job without --partial)."""


class SpecError(OrchestratorError):
    """A job spec, dataset row or request is unusable.

    ``location`` names the file (and line or field) so the user can fix it.
    """

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class JobError(OrchestratorError):
    """A job operation cannot proceed."""


class JobNotFoundError(JobError):
    """No job with that id or name is in this store."""


class JobConflictError(JobError):
    """Another spec already uses this job name."""


class BudgetExceededError(JobError):
    """The pre-flight cost estimate is above the spec's budget_usd."""


class StoreError(OrchestratorError):
    """The SQL job store failed."""


class StoreUnavailableError(StoreError):
    """The job store cannot be reached; check ORCHESTRATOR_DATABASE_URL."""


class StoreDataError(StoreError):
    """The database refused a value (too long, a character it can't hold)."""


class StoreNotAtHeadError(StoreError):
    """The job store's schema is not at the current version; run `orchestrator db upgrade`."""


class APIError(OrchestratorError):
    """The Message Batches API call failed."""


class APIConnectionError(APIError):
    """The API could not be reached (the request may or may not have arrived)."""


class APITimeoutError(APIConnectionError):
    """The API did not answer in time."""


class APIStatusError(APIError):
    """The API answered with an error status.

    Carries the HTTP ``status_code``, the envelope's ``error_type`` and
    ``request_id`` (for support tickets), and ``retry_after_s`` when the
    response said how long to wait.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_type: str | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
        should_retry: bool | None = None,
    ) -> None:
        self.status_code = status_code
        self.error_type = error_type
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        self.should_retry = should_retry
        suffix = f" (request-id {request_id})" if request_id else ""
        super().__init__(f"{status_code} {error_type or 'error'}: {message}{suffix}")


class BadRequestError(APIStatusError):
    """400 invalid_request_error."""


class AuthenticationError(APIStatusError):
    """401 authentication_error."""


class BillingError(APIStatusError):
    """402 billing_error."""


class PermissionDeniedError(APIStatusError):
    """403 permission_error."""


class NotFoundError(APIStatusError):
    """404 not_found_error."""


class RequestTimeoutError(APIStatusError):
    """408 request timeout."""


class ConflictError(APIStatusError):
    """409 conflict_error."""


class RequestTooLargeError(APIStatusError):
    """413 request_too_large."""


class RateLimitError(APIStatusError):
    """429 rate_limit_error."""


class InternalServerError(APIStatusError):
    """5xx api_error."""


class OverloadedError(InternalServerError):
    """529 overloaded_error."""


class APIUnreachableError(APIError):
    """The API could not be reached for longer than ORCHESTRATOR_UNREACHABLE_TIMEOUT."""


class AmbiguousCreateError(APIError):
    """A batch create whose outcome is unknown.

    The request body was sent but no usable answer came back (read timeout,
    connection reset, 5xx). The batch may exist: reconcile by listing before
    sending anything again. ``answered`` says the API did answer (a 5xx, a body
    that is not a batch): whatever it made exists by then, so reconciling can
    end soon; without an answer the create may still be under way.
    """

    def __init__(self, message: str | None = None, *, answered: bool = False) -> None:
        self.answered = answered
        super().__init__(message)


class ForeignResultsURLError(APIError):
    """A results_url points at a host other than the API base URL; refused so the key stays put."""


class ResultsStreamError(APIError):
    """A results download broke off before its end; download it again (ingest is idempotent)."""
