"""The Message Batches API's fixed facts this project builds on, each stated once.

Versions and host (docs/message-batches-api.md §1.1-§1.3), the create limits
(§3.2) and the create body's framing (§3.1): the planner sizes batches with the
same bytes the client sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

#: The API host the official SDKs default to.
DEFAULT_BASE_URL = "https://api.anthropic.com"

API_VERSION_2023 = "2023-06-01"
API_VERSION_2026 = "2026-10-21"
#: The versions the API accepts (§1.3).
API_VERSIONS = frozenset({API_VERSION_2023, API_VERSION_2026})
#: What the official SDK >= 2.0 sends; batch endpoints are identical under both (§1.3).
DEFAULT_API_VERSION = API_VERSION_2026

#: Requests in one batch at most (§3.2).
MAX_REQUESTS_PER_BATCH = 100_000
#: Bytes of one create body at most (§3.2).
MAX_BATCH_BYTES = 256_000_000

#: The create body is ``{"requests":[`` + request lines joined by ``,`` + ``]}``.
BODY_PREFIX = b'{"requests":['
BODY_SEPARATOR = b","
BODY_SUFFIX = b"]}"
#: Bytes of the create body around its lines: the prefix and suffix (15 bytes).
ENVELOPE_OVERHEAD = len(BODY_PREFIX) + len(BODY_SUFFIX)


def frame_body(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The create body's pieces in order, for lines that are each one request's JSON."""
    yield BODY_PREFIX
    for index, line in enumerate(lines):
        if not isinstance(line, bytes):
            raise TypeError(f"each request must be bytes, not {type(line).__name__}")
        if index:
            yield BODY_SEPARATOR
        yield line
    yield BODY_SUFFIX


def body_size(line_sizes: Iterable[int]) -> int:
    """Size in bytes of the create body holding lines of these sizes."""
    count = total = 0
    for size in line_sizes:
        count += 1
        total += size
    return ENVELOPE_OVERHEAD + total + len(BODY_SEPARATOR) * max(count - 1, 0)
