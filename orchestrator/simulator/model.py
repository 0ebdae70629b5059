"""A deterministic fake model: the reply is a pure function of (seed, params), except
that ``invalid_output_share`` also draws on the custom_id and cache usage on history.

Token counting follows :mod:`.tokens` (**1 token = 4 characters**, rounded up, also for
count_tokens); ``max_tokens`` truncates the reply at ``4 × max_tokens`` characters.

The reply, after an optional thinking block that spends the budget first:

* a forced tool (tool_choice ``tool``/``any``): one ``tool_use`` block whose input is
  :func:`.schema.fake_value` of the tool's input_schema; stop_reason ``tool_use``;
* structured output (``output_config.format`` of type ``json_schema``): one text block
  holding the compact JSON of ``fake_value`` of the schema; stop_reason ``end_turn``, or
  ``max_tokens`` when the JSON is cut at the budget;
* otherwise exactly one label when the prompt offers labels, else a short sentence.

Generated values are seeded with ``seed ^ params digest``: equal prompts get equal
answers, different prompts different ones. With ``invalid_output_share``, a structured
answer is made invalid on purpose, decided per custom_id at create
(:func:`invalid_output`): the JSON text is cut at half its length (stop_reason
``max_tokens``, never parseable); a tool input loses one required property, or, when
the schema requires none, is sent as a JSON string instead of an object. /v1/messages
answers are always valid.

Usage reports prompt caching (:mod:`.caching`): the prefix up to the last breakpoint is
``cache_read_input_tokens`` if this simulator saw it before, else
``cache_creation_input_tokens`` (in the 5m or 1h bucket by the breakpoint's ttl);
``input_tokens`` is the rest.

To keep memory small for 100,000-request batches, create reduces each request to a
:class:`Prompt` sketch (the few fields the reply depends on plus a params digest) and
results regenerate the reply from it; identical schemas are shared between sketches.
"""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from .caching import PromptCache, last_breakpoint
from .ids import digest64, tool_use_id, unit_interval
from .labels import choose_label, find_labels
from .schema import fake_value
from .tokens import CHARS_PER_TOKEN, count_input_tokens, messages_of, tokens

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
class OutputFormat:
    """Structured output the reply must follow (``output_config.format``, json_schema)."""

    schema: dict[str, Any]


#: Sketches of one batch share equal tools and formats (keys: their sorted JSON).
Shared = dict[bytes, ForcedTool | OutputFormat]
_S = TypeVar("_S", ForcedTool, OutputFormat)


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
    output_format: OutputFormat | None = None
    #: The structured answer (format or forced tool) must come out invalid.
    invalid: bool = False
    #: Input tokens up to the last cache breakpoint (0 without breakpoints).
    cache_tokens: int = 0
    #: The cached prefix was seen before: a cache read rather than a write.
    cache_hit: bool = False
    #: The last breakpoint has ``"ttl": "1h"``: writes go to the 1h bucket.
    cache_ttl_1h: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """The generated assistant turn."""

    content: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int


def params_digest(params: dict[str, Any]) -> int:
    """A stable 64-bit digest of the params (key order does not matter)."""
    return digest64(orjson.dumps(params, option=orjson.OPT_SORT_KEYS))


def last_user_text(params: dict[str, Any]) -> str:
    """The text of the last user message, trimmed to head + tail for long prompts."""
    for message in reversed(messages_of(params)):
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
    params: dict[str, Any],
    seed: int,
    error: str | None,
    shared: Shared,
    *,
    invalid: bool = False,
    cache: PromptCache | None = None,
) -> Prompt:
    """Reduce params to a :class:`Prompt`; equal tools and formats share one object.

    The answer and thinking texts are decided here, once: results then only truncate
    and serialise, and the (possibly long) prompt text is not kept. ``invalid`` asks for
    an invalid structured answer (ignored if the request wants none). ``cache`` is the
    simulator's prompt cache, looked up and updated here (without one, every breakpoint
    is a cache write). A request with an ``error`` gets neither.
    """
    digest, valid = params_digest(params), error is None
    text = last_user_text(params) if valid else ""
    tool = _forced_tool(params, shared) if valid else None
    output_format = _output_format(params, shared) if valid else None
    mark = last_breakpoint(params) if valid else None
    max_tokens, stops, thinking = (
        params.get(k) for k in ("max_tokens", "stop_sequences", "thinking")
    )
    thinks = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
    return Prompt(
        model=sys.intern(str(params.get("model"))),
        max_tokens=max_tokens if isinstance(max_tokens, int) else 1,
        input_tokens=count_input_tokens(params),
        answer=""
        if output_format is not None or not valid
        else sys.intern(answer_text(text, seed ^ digest)),
        digest=digest,
        stop_sequences=tuple(s for s in stops if isinstance(s, str))
        if isinstance(stops, list)
        else (),
        tool=tool,
        thinking=_thinking_text(text) if thinks else "",
        error=error,
        output_format=output_format,
        invalid=invalid and (tool is not None or output_format is not None),
        cache_tokens=mark.tokens if mark else 0,
        cache_hit=mark is not None and cache is not None and cache.visit(mark.digest),
        cache_ttl_1h=mark is not None and mark.ttl_1h,
    )


def invalid_output(seed: int, custom_id: str, share: float) -> bool:
    """Whether ``custom_id`` gets an invalid structured answer (``invalid_output_share``).

    A draw from (seed, custom_id) only: independent of processing order and params, so
    the same prompt retried under a new custom_id draws afresh.
    """
    return share > 0 and unit_interval(seed, "invalid-output", custom_id) < share


def _share(shared: Shared, key: bytes, value: _S) -> _S:
    found = shared.setdefault(key, value)
    return found if isinstance(found, type(value)) else value


def _forced_tool(params: dict[str, Any], shared: Shared) -> ForcedTool | None:
    choice, tools = params.get("tool_choice"), params.get("tools") or []
    if not isinstance(choice, dict) or choice.get("type") not in ("tool", "any") or not tools:
        return None
    wanted = choice.get("name") if choice.get("type") == "tool" else tools[0].get("name")
    for tool in tools:
        if tool.get("name") == wanted:
            schema = tool.get("input_schema") or {"type": "object"}
            key = orjson.dumps([wanted, schema], option=orjson.OPT_SORT_KEYS)
            return _share(shared, key, ForcedTool(name=str(wanted), input_schema=schema))
    return None


def _output_format(params: dict[str, Any], shared: Shared) -> OutputFormat | None:
    """``output_config.format`` when it is a json_schema format with an object schema."""
    config = params.get("output_config")
    found = config.get("format") if isinstance(config, dict) else None
    if not isinstance(found, dict) or found.get("type") != "json_schema":
        return None
    schema = found.get("schema")
    if not isinstance(schema, dict):
        return None
    key = b"format\x1f" + orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    return _share(shared, key, OutputFormat(schema))


def generate(prompt: Prompt, seed: int) -> Reply:
    """The fake model itself: thinking (optional), then a tool call, JSON, a label or text."""
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
    answer = prompt.answer if prompt.output_format is None else _json_answer(prompt, seed)
    text, stop_reason, stop_sequence = _truncate(answer, prompt.stop_sequences, budget)
    if prompt.invalid and prompt.output_format is not None and stop_reason == "end_turn":
        stop_reason = "max_tokens"  # cut on purpose: it reads as running out of tokens
    if text or not content:
        content.append({"type": "text", "text": text})
    used = sum(len(b.get("thinking", "")) + len(b.get("text", "")) for b in content)
    return Reply(content, stop_reason, stop_sequence, max(1, tokens(used)))


def _json_answer(prompt: Prompt, seed: int) -> str:
    assert prompt.output_format is not None
    value = fake_value(prompt.output_format.schema, seed ^ prompt.digest)
    text = orjson.dumps(value).decode()
    return cut_json(text) if prompt.invalid else text


def cut_json(text: str) -> str:
    """The first half of ``text``, never parseable ("" when that half still parses)."""
    half = text[: len(text) // 2]
    try:
        orjson.loads(half)
    except orjson.JSONDecodeError:
        return half
    return ""


def _tool_reply(prompt: Prompt, seed: int, content: list[dict[str, Any]]) -> Reply:
    assert prompt.tool is not None
    tool_input = fake_value(prompt.tool.input_schema, seed ^ prompt.digest)
    if prompt.invalid:
        tool_input = break_input(tool_input, prompt.tool.input_schema, seed ^ prompt.digest)
    block_id = tool_use_id(seed, prompt.digest)
    content.append(
        {"type": "tool_use", "id": block_id, "name": prompt.tool.name, "input": tool_input}
    )
    thought = sum(len(b.get("thinking", "")) for b in content)
    output = tokens(thought + len(orjson.dumps(tool_input))) + 10
    return Reply(content, "tool_use", None, output)


def break_input(value: Any, schema: dict[str, Any], seed: int) -> Any:
    """An invalid tool input: one required property removed (picked by ``seed``).

    Without a required property to remove (dropping an optional one would still be
    valid) the input changes type: an object becomes its JSON text, a string an object.
    """
    required = schema.get("required")
    names = (
        [name for name in required if isinstance(name, str) and name in value]
        if isinstance(required, list) and isinstance(value, dict)
        else []
    )
    if names:
        drop = names[digest64(seed, "drop") % len(names)]
        return {key: item for key, item in value.items() if key != drop}
    return {"value": value} if isinstance(value, str) else orjson.dumps(value).decode()


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
    """§2.6: the modern usage object; cache fields per :mod:`.caching`."""
    cached = prompt.cache_tokens
    written = 0 if prompt.cache_hit else cached
    return {
        "input_tokens": max(0, prompt.input_tokens - cached),
        "output_tokens": reply.output_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached - written,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 0 if prompt.cache_ttl_1h else written,
            "ephemeral_1h_input_tokens": written if prompt.cache_ttl_1h else 0,
        },
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
