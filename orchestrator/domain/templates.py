"""Templates: ``[request]`` strings filled from dataset rows (jobs/README.md).

Every string anywhere in ``[request]`` is a template in ``str.format`` syntax:
``{field}`` is the row's value, ``{{`` and ``}}`` are literal braces. Only plain
field names are allowed: attribute and index access (``{x.__class__}``,
``{x[0]}``), conversions and format specs are refused when the spec loads, so
rendering a row can never evaluate anything. ``prompt`` is sugar for
``messages = [{role = "user", content = <prompt>}]``.

A string that is exactly one placeholder at a numeric or boolean param
(:data:`TYPED_PARAMS`: ``max_tokens = "{mt}"``) is *typed*: it takes the row's value
as that type, a number or boolean as it is, text converted (a CSV's ``"64"`` -> 64),
anything else an error naming the row's field. Everywhere else placeholders render text.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

#: Params the API takes as integers, numbers or booleans (by key, at any depth): a
#: value there that is exactly one placeholder takes the row's value with that type.
TYPED_PARAMS = {
    **dict.fromkeys(("max_tokens", "top_k", "budget_tokens", "max_uses"), "integer"),
    **dict.fromkeys(("temperature", "top_p"), "number"),
    **dict.fromkeys(
        ("enabled", "is_error", "strict", "defer_loading", "disable_parallel_tool_use"),
        "boolean",
    ),
}
_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
_LITERAL_BRACES = "write {{ for a literal { and }} for a literal }"


@dataclass(frozen=True, slots=True)
class _Template:
    """A string in ``[request]`` with ``{field}`` placeholders, parsed once."""

    path: str  #: where it sits, e.g. "request.prompt", for error messages
    parts: tuple[tuple[str, str | None], ...]  #: (literal text, field name or None)


@dataclass(frozen=True, slots=True)
class _Typed:
    """A numeric or boolean param that is exactly one placeholder: ``"{mt}"``."""

    path: str
    field: str
    kind: str  #: "integer", "number" or "boolean"


class TemplateError(Exception):
    """A row can't fill a template; the caller adds the file and line."""


class MissingField(TemplateError):
    """A row lacks a field a template uses."""

    def __init__(self, field: str, path: str) -> None:
        super().__init__(f"row has no field {field!r} (used in {path})")


class BadValue(TemplateError):
    """A row's value can't be the type a typed param needs."""

    def __init__(self, typed: _Typed, value: Any) -> None:
        shown = "empty" if value is None or value == "" else repr(value)
        article = "an" if typed.kind == "integer" else "a"
        super().__init__(
            f"{typed.path}: needs {article} {typed.kind}, but the row's {typed.field!r} is {shown}"
        )


def compile_request(request: dict[str, Any]) -> dict[str, Any]:
    """Parse every string in ``[request]`` as a template; raise ValueError for a bad one."""
    if "prompt" in request:
        if "messages" in request:
            raise ValueError("request: give either prompt or messages, not both")
        if not isinstance(request["prompt"], str):
            raise ValueError("request.prompt: must be a string")
    compiled: dict[str, Any] = _compile(request, "request")
    return compiled


def _compile(value: Any, path: str, key: str = "") -> Any:
    if isinstance(value, str):
        return _compile_string(value, path, TYPED_PARAMS.get(key))
    if isinstance(value, dict):
        return {k: _compile(v, f"{path}.{k}", k) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile(v, f"{path}.{i}") for i, v in enumerate(value)]
    return value


def _compile_string(text: str, path: str, kind: str | None = None) -> str | _Template | _Typed:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"{path}: {_brace_problem(str(exc))}") from None
    parts: list[tuple[str, str | None]] = []
    for literal, field, format_spec, conversion in parsed:
        if field is not None:
            _check_field(field, bool(format_spec) or conversion is not None, path)
        parts.append((literal, field))
    if all(field is None for _, field in parts):
        return "".join(literal for literal, _ in parts)  # only escaped braces, if any
    if kind is not None and len(parts) == 1 and not parts[0][0]:
        field = parts[0][1]
        assert field is not None
        return _Typed(path, field, kind)
    return _Template(path, tuple(parts))


def _brace_problem(error: str) -> str:
    """``str.format``'s parse error as a user can act on it."""
    if error.startswith("Single '}'"):
        return "a } with no { before it: write }} for a literal }"
    if error.startswith(("Single '{'", "expected '}'")):
        return "a { with no } after it: write {{ for a literal {"
    return f"{error}: {_LITERAL_BRACES}"


def _check_field(field: str, formatted: bool, path: str) -> None:
    """Only plain ``{name}`` lookups: no attribute/index access, conversions or specs."""
    if not field.strip() or field.isdigit():
        raise ValueError(
            f"{path}: name a row field inside the braces, like {{text}} ({_LITERAL_BRACES})"
        )
    if field.lstrip()[:1] in ('"', "'"):
        raise ValueError(
            f"{path}: template field {{{field}...}} looks like JSON; {_LITERAL_BRACES}"
        )
    if "." in field or "[" in field:
        raise ValueError(
            f"{path}: template field {{{field}}} uses attribute or index access; "
            f"only plain {{field}} names are allowed ({_LITERAL_BRACES})"
        )
    if formatted:
        raise ValueError(
            f"{path}: template field {{{field}}} has a conversion or format spec; "
            f"only plain {{field}} names are allowed ({_LITERAL_BRACES})"
        )


def render_request(compiled: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Fill the templates from one row and expand ``prompt`` into ``messages``."""
    return request_renderer(compiled)(row)


def request_renderer(compiled: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """:func:`render_request` of ``compiled`` as one function of the row, for many rows:
    the walk over ``compiled`` is done once, here, not once a row."""
    render = _renderer(compiled)

    def rendered(row: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = render(row)
        if "prompt" in params:
            params["messages"] = [{"role": "user", "content": params.pop("prompt")}]
        return params

    return rendered


def _renderer(node: Any) -> Callable[[dict[str, Any]], Any]:
    """The function that fills ``node`` from a row: each template rendered, each dict
    and list made anew, anything else shared as it is."""
    if isinstance(node, _Template):
        path, parts = node.path, node.parts
        if len(parts) == 1 and parts[0][1] is not None:
            literal, field = parts[0]
            return lambda row: literal + _field_text(row, field, path)
        return lambda row: "".join(
            literal + _field_text(row, field, path) for literal, field in parts
        )
    if isinstance(node, _Typed):
        typed = node
        return lambda row: _typed_value(row, typed)
    if isinstance(node, dict):
        items = tuple((key, _renderer(value)) for key, value in node.items())
        return lambda row: {key: render(row) for key, render in items}
    if isinstance(node, list):
        renders = tuple(_renderer(value) for value in node)
        return lambda row: [render(row) for render in renders]
    return lambda _row: node


def _field_text(row: dict[str, Any], field: str | None, path: str) -> str:
    if field is None:
        return ""
    if field not in row:
        raise MissingField(field, path)
    value = row[field]
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()  # JSON reads better in a prompt than a repr
    return str(value)


def _typed_value(row: dict[str, Any], typed: _Typed) -> int | float | bool:
    if typed.field not in row:
        raise MissingField(typed.field, typed.path)
    value = row[typed.field]
    converted = _CONVERTERS[typed.kind](value.strip() if isinstance(value, str) else value)
    if converted is None:
        raise BadValue(typed, value)
    return converted


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if _INTEGER.match(value):
            return int(value)
        value = _number(value)  # "64.0", as spreadsheets write whole numbers
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _NUMBER.match(value):
        value = int(value) if _INTEGER.match(value) else float(value)
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return None


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _BOOLEANS.get(value.lower())
    if isinstance(value, int) and value in (0, 1):  # SQLite stores booleans as 0 / 1
        return bool(value)
    return None


_CONVERTERS: dict[str, Callable[[Any], int | float | bool | None]] = {
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
}
