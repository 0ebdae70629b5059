"""Batching under the API limits, and the custom_id scheme.

A create body is ``{"requests":[line,line,...]}`` with at most 100,000 lines and at
most 256 MB (docs/message-batches-api.md §3.2); a spec may lower both. The planner packs
requests in order, first fit, streaming: it never needs the whole job in memory.

custom_ids are ours, not the user's: ``<store_tag>-<item_id>-<attempt>``. User keys
may hold ``:``, ``/``, ``.``, spaces or 200 characters, which the API refuses
(§10.11), so keys stay in the store and the id only routes a result back to its
item and attempt, even from a duplicate batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.domain.contract import ENVELOPE_OVERHEAD, frame_body
from orchestrator.errors import SpecError

#: What the API accepts as a custom_id (§3.2).
CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
STORE_TAG_PATTERN = re.compile(r"^[a-z0-9]{1,16}$")
_OUR_CUSTOM_ID = re.compile(r"^([a-z0-9]{1,16})-([1-9][0-9]*)-([1-9][0-9]*)$")


@dataclass(frozen=True, slots=True)
class CustomIdParts:
    """The pieces of a custom_id made by :func:`make_custom_id`."""

    store_tag: str
    item_id: int
    attempt: int


def make_custom_id(store_tag: str, item_id: int, attempt: int) -> str:
    """The wire custom_id of one attempt at one item, e.g. ``"k3f9-1042-2"``."""
    if not STORE_TAG_PATTERN.match(store_tag):
        raise ValueError(f"store_tag must be 1 to 16 of [a-z0-9], got {store_tag!r}")
    if item_id < 1 or attempt < 1:
        raise ValueError(f"item_id and attempt must be >= 1, got {item_id} and {attempt}")
    custom_id = f"{store_tag}-{item_id}-{attempt}"
    if len(custom_id) > 64:  # only with ids beyond 10**22 or so
        raise ValueError(f"custom_id {custom_id!r} is longer than 64 characters")
    return custom_id


def parse_custom_id(custom_id: str) -> CustomIdParts | None:
    """Split a custom_id made by make_custom_id; None for anyone else's."""
    found = _OUR_CUSTOM_ID.match(custom_id)
    if found is None:
        return None
    return CustomIdParts(found[1], int(found[2]), int(found[3]))


def request_bytes(custom_id: str, params_json: bytes) -> bytes:
    """The exact wire line of one request inside the create body."""
    if not CUSTOM_ID_PATTERN.match(custom_id):
        raise ValueError(f"invalid custom_id {custom_id!r}")
    # The pattern admits no character JSON would escape, so no encoder is needed.
    return b'{"custom_id":"' + custom_id.encode("ascii") + b'","params":' + params_json + b"}"


#: Bytes of a request line besides its custom_id and params (see :func:`request_bytes`).
REQUEST_FRAME_BYTES = len(b'{"custom_id":"","params":}')


def request_size(custom_id: str, params_bytes: int) -> int:
    """``len(request_bytes(custom_id, params))`` for params of ``params_bytes`` bytes,
    without building the line. ``custom_id`` is one :func:`make_custom_id` made (ASCII,
    so one byte a character); the line itself is checked when it is built."""
    return REQUEST_FRAME_BYTES + len(custom_id) + params_bytes


def create_body(lines: Iterable[bytes]) -> bytes:
    """The whole create body, as the client streams it (for small bodies and tests)."""
    return b"".join(frame_body(lines))


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """One batch to create: its requests in order and its body size in bytes."""

    request_ids: list[int] = field(default_factory=list)
    body_bytes: int = ENVELOPE_OVERHEAD


class RequestTooLargeForBatch(SpecError):
    """One request is too large to fit in any batch, even alone."""

    def __init__(self, request_id: int, size: int, max_bytes: int) -> None:
        self.request_id = request_id
        self.size = size
        self.max_bytes = max_bytes
        super().__init__(
            f"request {request_id} is {size:,} bytes on the wire, which with the "
            f"{ENVELOPE_OVERHEAD}-byte batch envelope exceeds max_bytes = {max_bytes:,}; "
            "shorten it or raise batching.max_bytes (the API allows 256,000,000)"
        )


class BatchPlanner:
    """Streaming first-fit-in-order packing under a request count and a body size limit."""

    def __init__(self, max_requests: int, max_bytes: int) -> None:
        if max_requests < 1 or max_bytes < 1:
            raise ValueError("max_requests and max_bytes must be >= 1")
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self._ids: list[int] = []
        self._line_bytes = 0  # sum of line sizes in the open batch

    def add(self, request_id: int, size: int) -> PlannedBatch | None:
        """Add one request (its wire line is ``size`` bytes).

        Returns the open batch, closed, when this request would push it over either
        limit; the request then starts the next batch.
        """
        if ENVELOPE_OVERHEAD + size > self.max_bytes:  # body_size([size]): alone in a body
            raise RequestTooLargeForBatch(request_id, size, self.max_bytes)
        closed = None
        if self._ids and not self._fits(size):
            closed = self._close()
        self._ids.append(request_id)
        self._line_bytes += size
        return closed

    def finish(self) -> PlannedBatch | None:
        """Close and return the last batch, if it holds anything."""
        return self._close() if self._ids else None

    def _fits(self, size: int) -> bool:
        count = len(self._ids) + 1
        grown = ENVELOPE_OVERHEAD + self._line_bytes + size + (count - 1)
        return count <= self.max_requests and grown <= self.max_bytes

    def _close(self) -> PlannedBatch:
        count = len(self._ids)
        batch = PlannedBatch(self._ids, ENVELOPE_OVERHEAD + self._line_bytes + count - 1)
        self._ids = []
        self._line_bytes = 0
        return batch
