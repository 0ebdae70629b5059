"""A deterministic fake model: the reply is a pure function of (seed, params).

Token counting (one rule everywhere, including count_tokens): **1 token = 4 characters**,
rounded up. Input tokens count the system prompt, every message's text (non-text blocks
by the length of their JSON) and the tools' JSON. ``max_tokens`` truncates the reply at
``4 × max_tokens`` characters.

To keep memory small for 100,000-request batches, create reduces each request to a
:class:`Prompt` sketch (the few fields the reply depends on plus a params digest) and
results regenerate the reply from it.
"""

from __future__ import annotations

import base64
import math
import sys
from dataclasses import dataclass
from typing import Any

import orjson

from .ids import digest64, tool_use_id
from .labels import choose_label, find_labels
from .schema import fake_value

#: Characters per token (documented rule above).
CHARS_PER_TOKEN = 4
#: Characters of the last user message kept per request (head and tail).
PROMPT_KEEP_CHARS = 2_048

_SENTENCES = (
    "Here is a short answer about {topic}: the main point is clear, and the rest follows.",
    "Thanks for the question about {topic}. In brief, it works as expected in most cases.",
    "Regarding {topic}, the simplest explanation is usually the right one here.",
    "Looking at {topic}, I would summarise it in one sentence: it is reasonable and consistent.",
    "The answer concerning {topic} is straightforward once the context is taken into account.",
)


@dataclass(frozen=True, slots=True)
class ForcedTool:
    """A tool the reply must call (tool_choice ``tool`` or ``any``)."""

    name: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Prompt:
    """What the fake model needs from one request's params (a compact sketch)."""

    model: str
    max_tokens: int
    input_tokens: int
    #: The full reply text before max_tokens / stop_sequences are applied.
    answer: str
    digest: int
    stop_sequences: tuple[str, ...] = ()
    tool: ForcedTool | None = None
    #: The thinking block's text; empty when thinking is off.
    thinking: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The generated assistant turn."""

    content: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int


def tokens(chars: int) -> int:
    """The documented rule: ceil(chars / 4)."""
    return math.ceil(chars / CHARS_PER_TOKEN)


def params_digest(params: dict[str, Any]) -> int:
    """A stable 64-bit digest of the params (key order does not matter)."""
    return digest64(orjson.dumps(params, option=orjson.OPT_SORT_KEYS))


def count_input_tokens(params: dict[str, Any]) -> int:
    """§1.6: input_tokens for the system prompt, messages and tools (at least 1)."""
    chars = _text_chars(params.get("system"))
    for message in _messages(params):
        if isinstance(message, dict):
            chars += _text_chars(message.get("content"))
    if params.get("tools"):
        chars += len(orjson.dumps(params["tools"]))
    return max(1, tokens(chars))


def _messages(params: dict[str, Any]) -> list[Any]:
    messages = params.get("messages")
    return messages if isinstance(messages, list) else []


def _text_chars(content: object) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(_block_chars(block) for block in content)
    return len(orjson.dumps(content))


def _block_chars(block: object) -> int:
    if isinstance(block, dict) and isinstance(block.get("text"), str):
        return len(block["text"])
    return len(orjson.dumps(block))


def last_user_text(params: dict[str, Any]) -> str:
    """The text of the last user message, trimmed to head + tail for long prompts."""
    for message in reversed(_messages(params)):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _joined_text(message.get("content"))
            if len(text) > 2 * PROMPT_KEEP_CHARS:
                return text[:PROMPT_KEEP_CHARS] + "\n" + text[-PROMPT_KEEP_CHARS:]
            return text
    return ""


def _joined_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)]
    return "\n".join(texts)


def sketch(
    params: dict[str, Any], seed: int, error: str | None, tools: dict[bytes, ForcedTool]
) -> Prompt:
    """Reduce params to a :class:`Prompt`; identical forced tools share one object.

    The answer and thinking texts are decided here, once: results then only truncate
    and serialise, and the (possibly long) prompt text is not kept.
    """
    digest = params_digest(params)
    text = last_user_text(params) if error is None else ""
    max_tokens, stops, thinking = (
        params.get(k) for k in ("max_tokens", "stop_sequences", "thinking")
    )
    thinks = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
    return Prompt(
        model=sys.intern(str(params.get("model"))),
        max_tokens=max_tokens if isinstance(max_tokens, int) else 1,
        input_tokens=count_input_tokens(params),
        answer=sys.intern(answer_text(text, seed ^ digest)) if error is None else "",
        digest=digest,
        stop_sequences=tuple(s for s in stops if isinstance(s, str))
        if isinstance(stops, list)
        else (),
        tool=None if error else _forced_tool(params, tools),
        thinking=_thinking_text(text) if thinks else "",
        error=error,
    )


def _forced_tool(params: dict[str, Any], cache: dict[bytes, ForcedTool]) -> ForcedTool | None:
    choice, tools = params.get("tool_choice"), params.get("tools") or []
    if not isinstance(choice, dict) or choice.get("type") not in ("tool", "any") or not tools:
        return None
    wanted = choice.get("name") if choice.get("type") == "tool" else tools[0].get("name")
    for tool in tools:
        if tool.get("name") == wanted:
            schema = tool.get("input_schema") or {"type": "object"}
            key = orjson.dumps([wanted, schema], option=orjson.OPT_SORT_KEYS)
            return cache.setdefault(key, ForcedTool(name=str(wanted), input_schema=schema))
    return None


def generate(prompt: Prompt, seed: int) -> Reply:
    """The fake model itself: thinking (optional), then a tool call, a label or a sentence."""
    budget = prompt.max_tokens * CHARS_PER_TOKEN
    content: list[dict[str, Any]] = []
    if prompt.thinking:
        thought = prompt.thinking[:budget]
        budget -= len(thought)
        content.append(
            {"type": "thinking", "thinking": thought, "signature": _signature(prompt, seed)}
        )
    if prompt.tool is not None and budget > 0:
        return _tool_reply(prompt, seed, content)
    text, stop_reason, stop_sequence = _truncate(prompt.answer, prompt.stop_sequences, budget)
    if text or not content:
        content.append({"type": "text", "text": text})
    used = sum(len(b.get("thinking", "")) + len(b.get("text", "")) for b in content)
    return Reply(content, stop_reason, stop_sequence, max(1, tokens(used)))


def _tool_reply(prompt: Prompt, seed: int, content: list[dict[str, Any]]) -> Reply:
    assert prompt.tool is not None
    tool_input = fake_value(prompt.tool.input_schema, seed ^ prompt.digest)
    block_id = tool_use_id(seed, prompt.digest)
    content.append(
        {"type": "tool_use", "id": block_id, "name": prompt.tool.name, "input": tool_input}
    )
    thought = sum(len(b.get("thinking", "")) for b in content)
    output = tokens(thought + len(orjson.dumps(tool_input))) + 10
    return Reply(content, "tool_use", None, output)


def _truncate(text: str, stops: tuple[str, ...], budget: int) -> tuple[str, str, str | None]:
    """Earliest stop sequence wins over max_tokens; otherwise end_turn."""
    hits = [(text.find(stop), stop) for stop in stops if stop and stop in text]
    if hits:
        cut, stop = min(hits)
        if cut <= budget:
            return text[:cut], "stop_sequence", stop
    if len(text) > budget:
        return text[: max(budget, 0)], "max_tokens", None
    return text, "end_turn", None


def answer_text(text: str, seed: int) -> str:
    """Exactly one label when the prompt offers labels, else a short sentence."""
    labels = find_labels(text)
    if labels:
        return choose_label(labels, text, seed)
    template = _SENTENCES[digest64(seed, "sentence") % len(_SENTENCES)]
    return template.format(topic=_topic(text))


def _topic(text: str) -> str:
    words = [w.strip(".,;:!?\"'()[]").lower() for w in text.split()]
    keywords = sorted(
        {w for w in words if 4 < len(w) <= 20 and w.isalpha()}, key=lambda w: (-len(w), w)
    )
    return " and ".join(keywords[:2]) if keywords else "your request"


def _thinking_text(text: str) -> str:
    return f"The user asks about {_topic(text)}. I should answer briefly and directly."


def _signature(prompt: Prompt, seed: int) -> str:
    raw = b"".join(digest64(seed, prompt.digest, n).to_bytes(8, "little") for n in range(6))
    return base64.b64encode(raw).decode()


def usage(prompt: Prompt, reply: Reply, service_tier: str) -> dict[str, Any]:
    """§2.6: the modern usage object; cache fields are 0 (nothing is cached here)."""
    return {
        "input_tokens": prompt.input_tokens,
        "output_tokens": reply.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "server_tool_use": None,
        "service_tier": service_tier,
        "inference_geo": None,
    }


def message(prompt: Prompt, seed: int, message_id: str, service_tier: str) -> dict[str, Any]:
    """§2.6: the full Message object for a succeeded request."""
    reply = generate(prompt, seed)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": prompt.model,
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "stop_details": None,
        "container": None,
        "usage": usage(prompt, reply, service_tier),
    }
