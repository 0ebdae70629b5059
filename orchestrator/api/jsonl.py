"""Line framing over a byte stream, for results ``.jsonl`` downloads.

Chunks may split anywhere: inside a multi-byte UTF-8 character, inside a line, or
between ``\\r`` and ``\\n`` (the case that breaks the official SDK's decoder,
anthropic-sdk-python PR #1778). Lines are kept as bytes, so UTF-8 is never decoded
here and a split character is simply rejoined. No httpx here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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
    """
    line = _Line(max_line_bytes)
    for chunk in chunks:
        view = memoryview(chunk)
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            line.add(view[start:end])
            yield from line.take()
            start = end + 1
        line.add(view[start:])
    yield from line.take()


class _Line:
    """The line being assembled, capped at ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._oversized = False

    def add(self, piece: memoryview) -> None:
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
