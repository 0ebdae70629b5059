"""Values that satisfy a JSON Schema, for forced tool calls (tool_choice tool/any).

Covers what tool input schemas use in practice: object (all properties, required ones
always), string (enum, const, min/maxLength, a few formats), number/integer (bounds),
boolean, array (min/maxItems), null, anyOf/oneOf/allOf (first branch), type lists.
"""

from __future__ import annotations

from typing import Any

from .ids import digest64

#: Nesting depth after which objects and arrays stay empty.
MAX_DEPTH = 8
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
_FORMATS = {
    "date": "2026-01-15",
    "date-time": "2026-01-15T12:00:00Z",
    "time": "12:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/item",
    "uuid": "123e4567-e89b-42d3-a456-426614174000",
}


def fake_value(schema: object, seed: int, depth: int = 0) -> Any:
    """A deterministic value that validates against ``schema``."""
    if not isinstance(schema, dict):
        return {}
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][seed % len(schema["enum"])]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(combinator), list) and schema[combinator]:
            return fake_value(schema[combinator][0], seed, depth + 1)
    return _by_type(schema, _schema_type(schema), seed, depth)


def _schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        return "object" if "properties" in schema else "string"
    return str(kind)


def _by_type(schema: dict[str, Any], kind: str, seed: int, depth: int) -> Any:
    if kind == "object":
        return _object(schema, seed, depth)
    if kind == "array":
        return _array(schema, seed, depth)
    if kind == "integer":
        return _integer(schema, seed)
    if kind == "number":
        return _number(schema)
    if kind == "boolean":
        return seed % 2 == 0
    if kind == "null":
        return None
    return _string(schema, seed)


def _object(schema: dict[str, Any], seed: int, depth: int) -> dict[str, Any]:
    raw = schema.get("properties")
    properties: dict[str, Any] = raw if isinstance(raw, dict) else {}
    required = [r for r in schema.get("required") or [] if isinstance(r, str)]
    if depth >= MAX_DEPTH:
        properties = {name: properties.get(name, {}) for name in required}
    names = list(dict.fromkeys([*properties, *required]))
    return {
        name: fake_value(properties.get(name, {"type": "string"}), digest64(seed, name), depth + 1)
        for name in names
    }


def _array(schema: dict[str, Any], seed: int, depth: int) -> list[Any]:
    count = max(int(schema.get("minItems", 1)), 0 if depth >= MAX_DEPTH else 1)
    count = min(count, int(schema.get("maxItems", count)))
    return [fake_value(schema.get("items", {}), digest64(seed, n), depth + 1) for n in range(count)]


def _integer(schema: dict[str, Any], seed: int) -> int:
    low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + 101) - 1)
    low, high = int(low), int(high)
    return low + seed % (high - low + 1) if high >= low else low


def _number(schema: dict[str, Any]) -> float:
    low = float(schema.get("minimum", schema.get("exclusiveMinimum", 0.0)))
    high = float(schema.get("maximum", schema.get("exclusiveMaximum", low + 1.0)))
    return (low + high) / 2


def _string(schema: dict[str, Any], seed: int) -> str:
    value = _FORMATS.get(str(schema.get("format")), _WORDS[seed % len(_WORDS)])
    min_length = int(schema.get("minLength", 0))
    if len(value) < min_length:
        value = (value * (min_length // len(value) + 1))[:min_length]
    return value[: int(schema.get("maxLength", len(value)))]
