"""Line framing over a byte stream, for results ``.jsonl`` downloads.

Chunks may split anywhere: inside a multi-byte UTF-8 character, inside a line, or
between ``\\r`` and ``\\n`` (the case that breaks the official SDK's decoder,
anthropic-sdk-python PR #1778). Lines are kept as bytes, so UTF-8 is never decoded
here and a split character is simply rejoined. No httpx here. ``ReadAhead`` reads
such a stream on a thread of its own, while its consumer stores what it read.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: The longest results line kept whole (a message at the largest max_tokens with
#: thinking and tool input is a few MB). A longer line costs at most this much
#: memory: only its first ``OVERSIZED_PREFIX_BYTES`` are passed on, and the
#: caller finds them unparseable (quarantined, with the custom_id they show).
MAX_LINE_BYTES = 32 * 1024 * 1024
OVERSIZED_PREFIX_BYTES = 4096


def iter_lines(chunks: Iterable[bytes], max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Yield each complete line of the stream, without ``\\n`` or ``\\r\\n``.

    Empty lines are skipped. A line is yielded once its terminator has arrived, and
    the fragment left when the stream ends cleanly is yielded too (a final line
    without a trailing newline is still a line, §5.2). Memory is bounded by
    ``max_line_bytes`` plus one chunk, however long a line is: an oversized line
    is yielded as its first ``OVERSIZED_PREFIX_BYTES`` only.

    Each chunk is split in one call (a results file has a hundred thousand lines);
    only the line still open at a chunk's end is assembled piece by piece.
    """
    head = _Line(max_line_bytes)
    for chunk in chunks:
        if chunk.find(b"\n") < 0:
            head.add(chunk)
            continue
        pieces = chunk.split(b"\n")
        head.add(pieces[0])
        yield from head.take()
        for index in range(1, len(pieces) - 1):
            line = pieces[index]
            if len(line) > max_line_bytes:
                yield line[:OVERSIZED_PREFIX_BYTES]
            elif line.endswith(b"\r"):
                if len(line) > 1:
                    yield line[:-1]
            elif line:
                yield line
        head.add(pieces[-1])
    yield from head.take()


class _Line:
    """The line being assembled, capped at ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._oversized = False

    def add(self, piece: bytes) -> None:
        if self._oversized:
            return
        if len(self._buffer) + len(piece) > self._limit:
            room = max(OVERSIZED_PREFIX_BYTES - len(self._buffer), 0)
            self._buffer += piece[:room]
            del self._buffer[OVERSIZED_PREFIX_BYTES:]
            self._oversized = True
            return
        self._buffer += piece

    def take(self) -> Iterator[bytes]:
        buffer = self._buffer
        if buffer.endswith(b"\r") and not self._oversized:
            del buffer[-1]
        if buffer:
            yield bytes(buffer)
        self._buffer = bytearray()
        self._oversized = False


class ReadAhead(Generic[T]):
    """Runs ``source`` (say, a download framed and parsed a chunk at a time) on a
    thread of its own, ``ahead`` items ahead of the consumer, and hands over what it
    raises (the same exception, raised again in the consumer's thread). One ahead and
    no more by default: each item held is a chunk of lines in memory. When the block
    ends early, the thread stops at its next item and closes ``source`` there (closing
    the download ends a wait for bytes); with ``join``, leaving the block also waits
    for the thread to end (for a source that never waits on the network: say, a local
    file parsed).
    """

    def __init__(
        self,
        source: Iterator[T],
        *,
        name: str = "results-reader",
        ahead: int = 1,
        join: bool = False,
    ) -> None:
        if ahead < 1:
            raise ValueError(f"ahead must be >= 1, got {ahead}")
        self._source = source
        self._ready = threading.Condition()
        #: The items handed over, oldest first: (True, item), (False, what was raised)
        #: or (False, None) at the end.
        self._queue: deque[tuple[bool, Any]] = deque()
        self._ahead = ahead
        self._stop = False
        self._join = join
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)

    def __enter__(self) -> ReadAhead[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._ready:
            self._stop = True
            self._queue.clear()  # not kept while the thread winds down
            self._ready.notify_all()
        if self._join:
            self._thread.join()

    def items(
        self, on_idle: Callable[[], None] | None = None, late_s: float | None = None
    ) -> Iterator[T]:
        """The items in order; ``on_idle`` runs whenever the next one is ``late_s``
        seconds late (without them, the next one is waited for)."""
        while True:
            entry = self._take(None if on_idle is None else late_s)
            if entry is None:
                assert on_idle is not None
                on_idle()
                entry = self._take(None)
            assert entry is not None
            item, value = entry
            del entry
            if item:
                yield value
                del value  # not kept while the next one is waited for
            elif value is None:
                return
            else:
                raise value

    def _take(self, timeout: float | None) -> tuple[bool, Any] | None:
        with self._ready:
            if not self._ready.wait_for(lambda: bool(self._queue), timeout):
                return None
            entry = self._queue.popleft()
            self._ready.notify_all()
            return entry

    def _read(self) -> None:
        try:
            for value in self._source:
                handed = self._hand_over((True, value))
                del value  # the consumer's now: not kept while the next one is read
                if not handed:
                    self._close_source()
                    return
        except BaseException as exc:  # raised again in the consumer's thread
            self._hand_over((False, exc))
            return
        self._hand_over((False, None))

    def _close_source(self) -> None:
        """The consumer left early: the source's own clean-up (its files, its
        connections) runs here, on the thread that opened them."""
        close = getattr(self._source, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # nobody is left to hand it to
                close()

    def _hand_over(self, entry: tuple[bool, Any]) -> bool:
        """Leave this item, and wait until fewer than ``ahead`` items are waiting for
        the consumer before reading the next. False when the consumer is gone."""
        with self._ready:
            if self._stop:
                return False
            self._queue.append(entry)
            self._ready.notify_all()
            self._ready.wait_for(lambda: len(self._queue) < self._ahead or self._stop)
            return not self._stop
