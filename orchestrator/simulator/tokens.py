"""The simulator's one token rule: **1 token = 4 characters**, rounded up.

Input tokens count the system prompt, every message's text (non-text blocks by the
length of their JSON) and the tools' JSON. The same character measures size the prompt
cache prefix (:mod:`.caching`), so cached + uncached tokens add up to the total.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

#: Characters per token.
CHARS_PER_TOKEN = 4


def tokens(chars: int) -> int:
    """The documented rule: ceil(chars / 4)."""
    return math.ceil(chars / CHARS_PER_TOKEN)


def count_input_tokens(params: dict[str, Any]) -> int:
    """§1.6: input_tokens for the system prompt, messages and tools (at least 1)."""
    chars = text_chars(params.get("system"))
    for message in messages_of(params):
        if isinstance(message, dict):
            chars += text_chars(message.get("content"))
    if params.get("tools"):
        chars += len(orjson.dumps(params["tools"]))
    return max(1, tokens(chars))


def messages_of(params: dict[str, Any]) -> list[Any]:
    """``params["messages"]`` when it is a list, else []."""
    messages = params.get("messages")
    return messages if isinstance(messages, list) else []


def text_chars(content: object) -> int:
    """Characters of a system prompt or message content (a string or a block list)."""
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(block_chars(block) for block in content)
    return len(orjson.dumps(content))


def block_chars(block: object) -> int:
    """A text block counts its text; any other block the length of its JSON."""
    if isinstance(block, dict) and isinstance(block.get("text"), str):
        return len(block["text"])
    return len(orjson.dumps(block))
