"""Values that satisfy a JSON Schema, for forced tool calls and structured output.

A pure function of (schema, seed). Covers what tool input and label schemas use in
practice: object (all properties, required ones always; nothing else, so
``additionalProperties: false`` holds), string (enum, const, min/maxLength, a few
formats), number (minimum/maximum, exclusive bounds as numbers or draft-4 booleans),
integer (the same, plus multipleOf), boolean, array (min/maxItems, uniqueItems), null,
local ``$ref`` (``#/$defs/...``, ``#/definitions/...``, as pydantic emits), anyOf/oneOf/
allOf (first branch) and type lists. Numbers, integers, booleans, enum picks and array
lengths vary with the seed, within bounds. Not covered: ``pattern``, ``not``,
``if``/``then``, ``prefixItems``, min/maxProperties, multipleOf on numbers.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from .ids import digest64

#: Nesting depth after which objects keep only required properties and arrays minItems.
MAX_DEPTH = 8
#: Depth at which generation gives up (a required property that refers to itself).
GIVE_UP_DEPTH = 4 * MAX_DEPTH
#: Array length spread above minItems (when maxItems allows).
EXTRA_ITEMS = 2
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
_FORMATS = {
    "date": "2026-01-15",
    "date-time": "2026-01-15T12:00:00Z",
    "time": "12:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/item",
    "uuid": "123e4567-e89b-42d3-a456-426614174000",
}


def fake_value(schema: object, seed: int) -> Any:
    """A deterministic value that validates against ``schema``."""
    return _Faker(schema).value(schema, seed, 0)


class _Faker:
    """One generation: remembers the root schema so ``$ref`` can be resolved."""

    def __init__(self, root: object) -> None:
        self.root = root

    def value(self, schema: object, seed: int, depth: int) -> Any:
        schema = self.deref(schema)
        if not isinstance(schema, dict):
            return {}
        if depth >= GIVE_UP_DEPTH:
            return None
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][seed % len(schema["enum"])]
        for combinator in ("anyOf", "oneOf", "allOf"):
            if isinstance(schema.get(combinator), list) and schema[combinator]:
                return self.value(schema[combinator][0], seed, depth + 1)
        kind = _schema_type(schema)
        if kind == "object":
            return self.object(schema, seed, depth)
        if kind == "array":
            return self.array(schema, seed, depth)
        if kind == "integer":
            return _integer(schema, seed)
        if kind == "number":
            return _number(schema, seed)
        if kind == "boolean":
            return seed % 2 == 0
        return None if kind == "null" else _string(schema, seed)

    def deref(self, schema: object) -> object:
        """Follow local ``$ref``s (``#`` or ``#/a/b``); an unknown ref reads as ``{}``."""
        for _ in range(GIVE_UP_DEPTH):
            if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
                return schema
            schema = _pointer(self.root, schema["$ref"])
        return {}

    def object(self, schema: dict[str, Any], seed: int, depth: int) -> dict[str, Any]:
        raw = schema.get("properties")
        properties: dict[str, Any] = raw if isinstance(raw, dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        if depth >= MAX_DEPTH:
            properties = {name: properties.get(name, {}) for name in required}
        names = list(dict.fromkeys([*properties, *required]))
        return {
            name: self.value(
                properties.get(name, {"type": "string"}), digest64(seed, name), depth + 1
            )
            for name in names
        }

    def array(self, schema: dict[str, Any], seed: int, depth: int) -> list[Any]:
        raw = self.deref(schema.get("items", {}))
        items: dict[str, Any] = raw if isinstance(raw, dict) else {}
        unique, enum = schema.get("uniqueItems") is True, items.get("enum")
        if isinstance(enum, list) and enum and "const" not in items:
            count = _count(schema, seed, depth, len(enum) if unique else None)
            start = seed % len(enum)
            return [enum[(start + n) % len(enum)] for n in range(count)]
        count = _count(schema, seed, depth, None)
        values: list[Any] = []
        seen: set[bytes] = set()
        for n in range(8 * count + 8):
            if len(values) == count:
                break
            value = self.value(items, digest64(seed, n), depth + 1)
            key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
            if not unique or key not in seen:
                seen.add(key)
                values.append(value)
        return values


def _pointer(root: object, ref: str) -> object:
    if not ref.startswith("#"):
        return {}
    node = root
    for part in (p for p in ref[1:].split("/") if p):
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return {}
    return node


def _schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        if "properties" in schema:
            return "object"
        return "array" if "items" in schema else "string"
    return str(kind)


def _count(schema: dict[str, Any], seed: int, depth: int, cap: int | None) -> int:
    """An array length within min/maxItems (and ``cap``), seeded; minItems when deep."""
    least = _whole(schema.get("minItems")) or 0
    most = _whole(schema.get("maxItems"))
    if cap is not None:
        most = cap if most is None else min(most, cap)
    if depth >= MAX_DEPTH:
        return least if most is None else min(least, most)
    least = max(least, 1)
    upper = least + EXTRA_ITEMS if most is None else min(most, least + EXTRA_ITEMS)
    if upper < least:
        return max(upper, 0)
    return least + digest64(seed, "count") % (upper - least + 1)


def _whole(raw: object) -> int | None:
    number = _numeric(raw)
    return None if number is None else int(number)


def _numeric(raw: object) -> float | None:
    """A JSON number as float; None for anything else (booleans included)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw)


def _bounds(schema: dict[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    """(low, low exclusive, high, high exclusive): the tightest of each pair of keys."""
    low, low_x = _numeric(schema.get("minimum")), schema.get("exclusiveMinimum") is True
    high, high_x = _numeric(schema.get("maximum")), schema.get("exclusiveMaximum") is True
    ex_low, ex_high = (_numeric(schema.get(k)) for k in ("exclusiveMinimum", "exclusiveMaximum"))
    if ex_low is not None and (low is None or ex_low >= low):
        low, low_x = ex_low, True
    if ex_high is not None and (high is None or ex_high <= high):
        high, high_x = ex_high, True
    return low, low_x, high, high_x


def _integer(schema: dict[str, Any], seed: int) -> int:
    low_f, low_x, high_f, high_x = _bounds(schema)
    low = None if low_f is None else math.floor(low_f) + 1 if low_x else math.ceil(low_f)
    high = None if high_f is None else math.ceil(high_f) - 1 if high_x else math.floor(high_f)
    if low is None:
        low = 0 if high is None or high >= 0 else high - 100
    if high is None:
        high = low + 100
    step = _whole(schema.get("multipleOf"))
    if step and step > 0:
        first, last = -(-low // step), high // step
        return (first + seed % (last - first + 1)) * step if last >= first else first * step
    return low + seed % (high - low + 1) if high >= low else low


def _number(schema: dict[str, Any], seed: int) -> float:
    """Strictly inside (low, high) so exclusive bounds hold; 4 decimals when that fits."""
    low, _, high, _ = _bounds(schema)
    if low is None:
        low = 0.0 if high is None or high > 0.0 else high - 1.0
    if high is None:
        high = low + 1.0
    if high <= low:
        return low
    value = low + (high - low) * ((seed % 999 + 1) / 1000)
    rounded = round(value, 4)
    return rounded if low < rounded < high else value


def _string(schema: dict[str, Any], seed: int) -> str:
    value = _FORMATS.get(str(schema.get("format")), _WORDS[seed % len(_WORDS)])
    min_length = _whole(schema.get("minLength")) or 0
    if len(value) < min_length:
        value = (value * (min_length // len(value) + 1))[:min_length]
    max_length = _whole(schema.get("maxLength"))
    return value if max_length is None else value[:max_length]
