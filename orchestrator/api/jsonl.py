"""Line framing over a byte stream, for results ``.jsonl`` downloads.

Chunks may split anywhere: inside a multi-byte UTF-8 character, inside a line, or
between ``\\r`` and ``\\n`` (the case that breaks the official SDK's decoder,
anthropic-sdk-python PR #1778). Lines are kept as bytes, so UTF-8 is never decoded
here and a split character is simply rejoined. No httpx here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield each complete line of the stream, without ``\\n`` or ``\\r\\n``.

    Empty lines are skipped. A line is yielded only once its terminator has arrived,
    except that the fragment left when the stream ends cleanly is yielded too (a final
    line without a trailing newline is still a line, §5.2). Memory is bounded by the
    longest line plus one chunk.
    """
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        # Only split when this chunk ends a line: a long line arriving in many small
        # chunks is then copied O(1) times instead of once per chunk.
        if b"\n" not in chunk:
            continue
        *complete, rest = pending.split(b"\n")
        pending = rest
        yield from _non_empty(complete)
    yield from _non_empty([pending])


def _non_empty(lines: Iterable[bytearray]) -> Iterator[bytes]:
    for line in lines:
        if line.endswith(b"\r"):
            del line[-1]
        if line:
            yield bytes(line)
