"""Templates: ``[request]`` strings filled from dataset rows (jobs/README.md).

Every string anywhere in ``[request]`` is a template in ``str.format`` syntax:
``{field}`` is the row's value, ``{{`` and ``}}`` are literal braces. Only plain
field names are allowed: attribute and index access (``{x.__class__}``,
``{x[0]}``), conversions and format specs are refused when the spec loads, so
rendering a row can never evaluate anything. ``prompt`` is sugar for
``messages = [{role = "user", content = <prompt>}]``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class _Template:
    """A string in ``[request]`` with ``{field}`` placeholders, parsed once."""

    path: str  #: where it sits, e.g. "request.prompt", for error messages
    parts: tuple[tuple[str, str | None], ...]  #: (literal text, field name or None)


class MissingField(Exception):
    """A row lacks a field a template uses; the caller adds the file and line."""

    def __init__(self, field: str, path: str) -> None:
        super().__init__(f"row has no field {field!r} (used in {path})")


def compile_request(request: dict[str, Any]) -> dict[str, Any]:
    """Parse every string in ``[request]`` as a template; raise ValueError for a bad one."""
    if "prompt" in request:
        if "messages" in request:
            raise ValueError("request: give either prompt or messages, not both")
        if not isinstance(request["prompt"], str):
            raise ValueError("request.prompt: must be a string")
    compiled: dict[str, Any] = _compile(request, "request")
    return compiled


def _compile(value: Any, path: str) -> Any:
    if isinstance(value, str):
        return _compile_string(value, path)
    if isinstance(value, dict):
        return {k: _compile(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_compile(v, f"{path}.{i}") for i, v in enumerate(value)]
    return value


def _compile_string(text: str, path: str) -> str | _Template:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc} (write {{{{ or }}}} for a literal brace)") from None
    parts: list[tuple[str, str | None]] = []
    for literal, field, format_spec, conversion in parsed:
        if field is not None:
            _check_field(field, bool(format_spec) or conversion is not None, path)
        parts.append((literal, field))
    if all(field is None for _, field in parts):
        return "".join(literal for literal, _ in parts)  # only escaped braces, if any
    return _Template(path, tuple(parts))


def _check_field(field: str, formatted: bool, path: str) -> None:
    """Only plain ``{name}`` lookups: no attribute/index access, conversions or specs."""
    if not field.strip() or field.isdigit():
        raise ValueError(f"{path}: name a row field inside the braces, like {{text}}")
    if "." in field or "[" in field:
        raise ValueError(
            f"{path}: template field {{{field}}} uses attribute or index access; "
            "only plain {field} names are allowed"
        )
    if formatted:
        raise ValueError(
            f"{path}: template field {{{field}}} has a conversion or format spec; "
            "only plain {field} names are allowed"
        )


def render_request(compiled: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Fill the templates from one row and expand ``prompt`` into ``messages``."""
    params: dict[str, Any] = _render(compiled, row)
    if "prompt" in params:
        params["messages"] = [{"role": "user", "content": params.pop("prompt")}]
    return params


def _render(node: Any, row: dict[str, Any]) -> Any:
    if isinstance(node, _Template):
        return "".join(
            literal + _field_text(row, field, node.path) for literal, field in node.parts
        )
    if isinstance(node, dict):
        return {k: _render(v, row) for k, v in node.items()}
    if isinstance(node, list):
        return [_render(v, row) for v in node]
    return node


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
