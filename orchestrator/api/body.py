"""The create body, streamed: ``{"requests":[...]}`` from caller-serialized requests.

Never joined in memory: a 256 MB body goes out in pieces of about
``BODY_CHUNK_BYTES``, framed exactly as ``domain.contract`` sizes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from orchestrator.domain.contract import body_size, frame_body

#: A create body is handed to httpx in pieces of about this many bytes: few socket
#: writes, and memory bounded by one piece instead of the whole (up to 256 MB) body.
BODY_CHUNK_BYTES = 64 * 1024

#: What ``BatchesClient.create`` takes: see its docstring.
CreateRequests = Iterable[bytes] | Callable[[], Iterable[bytes]]


class CreateBody:
    """The ``{"requests":[...]}`` body of a create, streamed from caller-serialized parts."""

    def __init__(self, requests: CreateRequests) -> None:
        if isinstance(requests, bytes | bytearray | str):
            raise TypeError("create() takes an iterable of serialized requests, not one string.")
        self.content_length: int | None = None
        self.replayable = True
        if isinstance(requests, Sequence):
            self.content_length = _body_length(requests)
            self._factory: Callable[[], Iterable[bytes]] = lambda: requests
        elif callable(requests):
            self._factory = requests
        else:
            self.replayable = False
            self._factory = _once(requests)

    def chunks(self) -> Iterator[bytes]:
        """A fresh iterator over the body, in pieces of about ``BODY_CHUNK_BYTES``."""
        return _coalesce(frame_body(self._factory()), BODY_CHUNK_BYTES)


def _body_length(requests: Sequence[bytes]) -> int:
    for request in requests:
        if not isinstance(request, bytes):
            raise TypeError(f"each request must be bytes, not {type(request).__name__}")
    return body_size(map(len, requests))


def _once(requests: Iterable[bytes]) -> Callable[[], Iterable[bytes]]:
    used = False

    def factory() -> Iterable[bytes]:
        nonlocal used
        if used:
            raise RuntimeError("a one-shot iterable of requests cannot be sent twice")
        used = True
        return requests

    return factory


def _coalesce(parts: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for part in parts:
        if len(part) >= size:  # big enough alone: pass it on without a copy
            if buffer:
                yield bytes(buffer)
                buffer.clear()
            yield part
            continue
        buffer += part
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)
