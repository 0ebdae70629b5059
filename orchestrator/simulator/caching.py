"""Prompt caching: the prefix up to the last ``cache_control`` breakpoint, and whether
this simulator has seen it before.

A breakpoint is a ``cache_control`` object on a tool, a system block or a message
content block; a top-level ``params["cache_control"]`` (automatic caching) marks the
whole prompt. The prefix runs in the API's cache order, tools -> system -> messages, up
to and including the last breakpoint, and is measured with the rule of :mod:`.tokens`
(the tools by the JSON of the tools list up to the marked one), so the cached tokens
never exceed ``count_input_tokens``. A prefix is identified by a digest of the model
and the prefix's content (message roles included).

Simplifications (the real API differs): no minimum cacheable length; only the last
breakpoint counts (no look-back to earlier ones); entries never expire by time, the
ttl (``"5m"`` by default, or ``"1h"``) only picks the ``cache_creation`` bucket a write
is reported in; the seen set keeps the :data:`MAX_PREFIXES` most recently used
prefixes; a batch looks its prefixes up at create time, in request order, whatever
the requests' outcomes turn out to be.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import orjson

from .ids import digest64
from .tokens import block_chars, messages_of, tokens

#: Prefix digests remembered by one simulator (least recently used forgotten first).
MAX_PREFIXES = 100_000


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """The cached prefix of one request."""

    digest: int
    #: Tokens of the prefix, by the 4-characters rule.
    tokens: int
    #: The last breakpoint asked for ``"ttl": "1h"`` (else the default 5 minutes).
    ttl_1h: bool


def last_breakpoint(params: dict[str, Any]) -> Breakpoint | None:
    """The prefix up to the last breakpoint, or None without breakpoints (or if empty)."""
    pieces = _pieces(params)
    top = params.get("cache_control")
    marks = [(n + 1, mark) for n, (_, _, mark) in enumerate(pieces) if mark is not None]
    if isinstance(top, dict) and pieces:
        marks.append((len(pieces), top))
    if not marks:
        return None
    end, control = marks[-1]
    prefix_tokens = tokens(_chars(pieces[:end]))
    if prefix_tokens == 0:
        return None
    content = [params.get("model"), [[role, item] for role, item, _ in pieces[:end]]]
    digest = digest64(orjson.dumps(content, option=orjson.OPT_SORT_KEYS))
    return Breakpoint(digest, prefix_tokens, control.get("ttl") == "1h")


#: (role, or "tool"; a tool, a block or a string content; its cache_control or None)
_Piece = tuple[object, object, dict[str, Any] | None]


def _pieces(params: dict[str, Any]) -> list[_Piece]:
    """The prompt in cache order: one piece per tool, system block and content block.

    Sizes are left to :func:`_chars`, so prompts without breakpoints stay cheap.
    """
    tools = params.get("tools")
    pieces: list[_Piece] = [
        ("tool", tool, _mark(tool)) for tool in (tools if isinstance(tools, list) else [])
    ]
    pieces.extend(_content_pieces("system", params.get("system")))
    for message in messages_of(params):
        if isinstance(message, dict):
            pieces.extend(_content_pieces(message.get("role"), message.get("content")))
    return pieces


def _content_pieces(role: object, content: object) -> list[_Piece]:
    """Validated content is a string (no breakpoint possible) or a list of blocks."""
    if isinstance(content, str):
        return [(role, content, None)]
    if isinstance(content, list):
        return [(role, block, _mark(block)) for block in content]
    return []


def _chars(prefix: list[_Piece]) -> int:
    """Characters as :func:`.tokens.count_input_tokens` counts them.

    The tools list is counted as JSON, ``[`` + tools joined by ``,`` + ``]``: one extra
    character per tool, plus one.
    """
    chars = 0
    for role, item, _ in prefix:
        if role == "tool":
            chars += len(orjson.dumps(item)) + 1
        else:
            chars += len(item) if isinstance(item, str) else block_chars(item)
    return chars + (1 if prefix and prefix[0][0] == "tool" else 0)


def _mark(block: object) -> dict[str, Any] | None:
    control = block.get("cache_control") if isinstance(block, dict) else None
    return control if isinstance(control, dict) else None


class PromptCache:
    """The prefix digests seen so far: a bounded, least-recently-used set."""

    def __init__(self, limit: int = MAX_PREFIXES) -> None:
        self._seen: dict[int, None] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def visit(self, digest: int) -> bool:
        """True if ``digest`` was seen before (a cache read); remember it either way."""
        with self._lock:
            hit = self._seen.pop(digest, 0) is None
            if not hit and len(self._seen) >= self._limit:
                del self._seen[next(iter(self._seen))]
            self._seen[digest] = None
            return hit
