"""How long a create of unknown outcome is waited for, and where its batch may be.

The API takes no idempotency key (docs/message-batches-api.md §8), so a create
whose answer was lost is settled by listing batches: a batch made by it shows
up with ``created_at`` between the intent and the moment the create could last
have been processed. Past that deadline, a create nobody listed never happened
and is planned again; nothing is sent twice either way.

* The API answered (a 5xx, a body that is not a batch): whatever it made exists
  by then, so the deadline is the answer plus ``CREATE_SETTLE_S`` for the list
  to catch up. A job moves on within seconds.
* No answer (a read timeout, a reset, a worker killed mid-POST): the create may
  still be processed until the body's upload plus the create's own timeout
  (``ORCHESTRATOR_CREATE_TIMEOUT``) have passed, counted from the intent.

Clocks differ between this machine and the API: ``skew_s`` widens the window in
which a listed ``created_at`` may fall, never the wait.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: Seconds after an answered create before the listing is trusted to show its batch.
CREATE_SETTLE_S = 15.0
#: The slowest upload assumed for a create body, in bytes per second (1 MB/s).
UPLOAD_FLOOR_BYTES_PER_S = 1_000_000


def answered_deadline(answered_at: datetime) -> datetime:
    """Deadline of a create the API answered (with an error) at ``answered_at``."""
    return answered_at + timedelta(seconds=CREATE_SETTLE_S)


def unanswered_deadline(intent_at: datetime, body_bytes: int, create_timeout_s: float) -> datetime:
    """Deadline of a create that got no answer: upload time, the create's own
    timeout, and the settle time, counted from the intent."""
    upload_s = body_bytes / UPLOAD_FLOOR_BYTES_PER_S
    return intent_at + timedelta(seconds=upload_s + create_timeout_s + CREATE_SETTLE_S)


def match_window(
    intent_at: datetime, deadline: datetime, skew_s: float
) -> tuple[datetime, datetime]:
    """When (by the API's clock) a batch made by the create can be ``created_at``."""
    skew = timedelta(seconds=skew_s)
    return intent_at - skew, deadline + skew
