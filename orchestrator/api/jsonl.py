"""Line framing over a byte stream, for results ``.jsonl`` downloads.

Chunks may split anywhere: inside a multi-byte UTF-8 character, inside a line, or
between ``\\r`` and ``\\n`` (the case that breaks the official SDK's decoder,
anthropic-sdk-python PR #1778). Lines are kept as bytes, so UTF-8 is never decoded
here and a split character is simply rejoined. No httpx here. ``ReadAhead`` reads
such a stream on a thread of its own, while its consumer stores what it read.
"""

from __future__ import annotations

import threading
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
    thread of its own, one item ahead of the consumer, and hands over what it raises.
    One ahead and no more: each item held is a chunk of lines in memory. When the
    block ends early, the thread stops at its next item (closing the download ends a
    wait for bytes).
    """

    def __init__(self, source: Iterator[T]) -> None:
        self._source = source
        self._ready = threading.Condition()
        #: The next item, handed over: (True, item), (False, what was raised) or
        #: (False, None) at the end; None while the thread is still reading it.
        self._slot: tuple[bool, Any] | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._read, name="results-reader", daemon=True)

    def __enter__(self) -> ReadAhead[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._ready:
            self._stop = True
            self._ready.notify_all()

    def items(self, on_idle: Callable[[], None], late_s: float) -> Iterator[T]:
        """The items in order; ``on_idle`` runs whenever the next one is ``late_s``
        seconds late."""
        while True:
            entry = self._take(late_s)
            if entry is None:
                on_idle()
                entry = self._take(None)
            assert entry is not None
            item, value = entry
            if item:
                yield value
            elif value is None:
                return
            else:
                raise value

    def _take(self, timeout: float | None) -> tuple[bool, Any] | None:
        with self._ready:
            if not self._ready.wait_for(lambda: self._slot is not None, timeout):
                return None
            entry, self._slot = self._slot, None
            self._ready.notify_all()
            return entry

    def _read(self) -> None:
        try:
            for value in self._source:
                handed = self._hand_over((True, value))
                del value  # the consumer's now: not kept while the next one is read
                if not handed:
                    return
        except BaseException as exc:  # raised again in the consumer's thread
            self._hand_over((False, exc))
            return
        self._hand_over((False, None))

    def _hand_over(self, entry: tuple[bool, Any]) -> bool:
        """Leave this item, and wait until the consumer took it before reading the
        next. False when the consumer is gone."""
        with self._ready:
            self._slot = entry
            self._ready.notify_all()
            self._ready.wait_for(lambda: self._slot is None or self._stop)
            return not self._stop
