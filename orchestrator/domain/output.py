"""Labels as data: a job's declared output, how it is asked for, read and laid out.

A spec's ``[output]`` names a JSON Schema (an object with properties) and a mode:

* ``json_schema``: sent as ``output_config.format`` (``{"type": "json_schema",
  "schema": ...}``); the answer is the JSON text of the message's text blocks;
* ``tool``: a forced tool (``tools=[{name, input_schema}]``, ``tool_choice={"type":
  "tool", "name": ...}``); the answer is that tool_use block's ``input``.

Every succeeded answer is parsed and validated with a real JSON Schema validator
(Draft 2020-12). An invalid one (cut at ``max_tokens``, a missing required
property, a wrong type or enum) is an *invalid output*: kept with its raw text and
the reason, retried as a new attempt, and failed as ``invalid_output`` when the
attempts run out (``domain.outcomes``).

Columns (the per-job view and the exports): identity columns, then one per
top-level property named exactly as the property, then the input row's columns
(prefixed ``input_`` when the name is taken), then the result fields (prefixed
``result_`` when a property took the name). A property may not take an identity
column's name.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from orchestrator.domain.params import ParamsError

if TYPE_CHECKING:  # imported where used: jsonschema takes 0.05-0.08 s to import, and
    # only a job with [output] needs it (every command starts by importing this module)
    from jsonschema import Draft202012Validator

#: Error type of an item whose answers never matched the schema.
INVALID_OUTPUT = "invalid_output"
#: The forced tool's name when the spec gives none.
DEFAULT_TOOL_NAME = "record"
TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: Columns that say which item a row is: never a property's name.
IDENTITY_COLUMNS = ("job_name", "key", "custom_id", "attempts", "status")
#: What every row carries about its final result, after the property and input columns.
RESULT_COLUMNS = (
    "result_type",
    "text",
    "thinking",
    "tool_input",
    "output_error",
    "stop_reason",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cost_usd",
    "cached",
    "error_type",
    "error_message",
)
#: Characters a property name may not hold: it becomes a column name in SQL.
UNSAFE_NAME = re.compile(r"[\"'\\\x00-\x1f]")
#: Params an ``[output]`` writes itself: a request that sets them too is refused.
OUTPUT_PARAMS = ("output_config", "tools", "tool_choice")
#: Characters of an invalid answer's reason kept.
MAX_REASON_CHARS = 500


class OutputMode(enum.StrEnum):
    JSON_SCHEMA = "json_schema"
    TOOL = "tool"


class ColumnType(enum.StrEnum):
    """A column's type, from its property's schema (JSON for anything nested or mixed)."""

    STRING = "string"
    DOUBLE = "double"
    INT64 = "int64"
    BOOL = "bool"
    JSON = "json"


class OutputSchemaError(ValueError):
    """The declared schema can't be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Output:
    """A job's declared output: its schema, how it is asked for, and the validator."""

    schema: dict[str, Any]
    mode: OutputMode = OutputMode.JSON_SCHEMA
    tool_name: str = DEFAULT_TOOL_NAME

    @classmethod
    def checked(
        cls, schema: object, mode: OutputMode, tool_name: str = DEFAULT_TOOL_NAME
    ) -> Output:
        """An Output whose schema is a usable object schema; OutputSchemaError otherwise."""
        check_schema(schema)
        assert isinstance(schema, dict)
        if not TOOL_NAME_PATTERN.match(tool_name):
            raise OutputSchemaError(f"tool_name must match {TOOL_NAME_PATTERN.pattern}")
        return cls(schema, mode, tool_name)

    @property
    def properties(self) -> dict[str, Any]:
        """Top-level properties, in schema order."""
        props = self.schema.get("properties")
        return dict(props) if isinstance(props, dict) else {}

    def request_params(self) -> dict[str, Any]:
        """The params that ask the API for this output."""
        if self.mode is OutputMode.TOOL:
            tool = {
                "name": self.tool_name,
                "description": "Record the answer.",
                "input_schema": self.schema,
            }
            return {"tools": [tool], "tool_choice": {"type": "tool", "name": self.tool_name}}
        return {"output_config": {"format": {"type": "json_schema", "schema": self.schema}}}

    def validator(self) -> Draft202012Validator:
        from jsonschema import Draft202012Validator

        return Draft202012Validator(self.schema)


def with_output(params: dict[str, Any], output: Output) -> dict[str, Any]:
    """``params`` asking for ``output``; params that already ask for something of their
    own (tools, tool_choice, output_config) are refused with ``ParamsError``."""
    for name in OUTPUT_PARAMS:
        if name in params:
            raise ParamsError(name, "[output] writes this itself; remove it or drop [output]")
    return {**params, **output.request_params()}


def check_schema(schema: object) -> None:
    """The schema is a valid JSON Schema for an object with properties."""
    if not isinstance(schema, dict):
        raise OutputSchemaError("must be a JSON object (a JSON Schema)")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise OutputSchemaError(
            f"is not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
        ) from None
    if schema.get("type", "object") != "object":
        raise OutputSchemaError(f'must describe an object (type "object"), not {schema["type"]!r}')
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        raise OutputSchemaError("must have properties (one column each)")
    odd = sorted(n for n in props if not n or UNSAFE_NAME.search(n))
    if odd:
        raise OutputSchemaError(
            f"property name {odd[0]!r} can't be a column name (no quotes, backslashes or "
            "control characters)"
        )
    taken = sorted(set(props) & set(IDENTITY_COLUMNS))
    if taken:
        raise OutputSchemaError(
            f"property {taken[0]!r} would hide the column of that name; rename it "
            f"(reserved: {', '.join(IDENTITY_COLUMNS)})"
        )


def read_answer(
    output: Output,
    validator: Draft202012Validator,
    content: Sequence[Mapping[str, Any]],
    stop_reason: str | None,
) -> tuple[Any, str | None]:
    """(the answer, None) when valid; (None, why not) otherwise."""
    if output.mode is OutputMode.TOOL:
        calls = [
            b for b in content if b.get("type") == "tool_use" and b.get("name") == output.tool_name
        ]
        if not calls:
            return None, _cut(f"no call of the tool {output.tool_name!r}", stop_reason)
        value = calls[0].get("input")
    else:
        text = "".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return None, _cut(f"the answer is not JSON ({exc})", stop_reason)
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(value))
    if error is None:
        return value, None
    where = "/".join(str(p) for p in error.absolute_path)
    reason = f"{where}: {error.message}" if where else error.message
    return None, _cut(f"the answer does not match the schema: {reason}", stop_reason)


class Answers:
    """Reads a job's answers: the stored JSON of a valid one, or why it is invalid."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self._validator = output.validator()

    def read(
        self, content: Sequence[Mapping[str, Any]], stop_reason: str | None
    ) -> tuple[str | None, str | None]:
        """(answer as JSON text, None), or (None, why it is invalid)."""
        value, error = read_answer(self.output, self._validator, content, stop_reason)
        if error is not None:
            return None, error
        return orjson.dumps(value).decode(), None


def _cut(reason: str, stop_reason: str | None) -> str:
    if stop_reason == "max_tokens":
        reason += " (cut at max_tokens)"
    elif stop_reason == "refusal":
        reason += " (the model refused)"
    return reason[:MAX_REASON_CHARS]


def column_type(schema: object) -> ColumnType:
    """The column type of one property: scalars typed, the rest JSON."""
    if not isinstance(schema, dict):
        return ColumnType.JSON
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None and isinstance(schema.get("enum"), list) and schema["enum"]:
        if all(isinstance(v, str) for v in schema["enum"]):
            kind = "string"
    return {
        "string": ColumnType.STRING,
        "number": ColumnType.DOUBLE,
        "integer": ColumnType.INT64,
        "boolean": ColumnType.BOOL,
    }.get(str(kind), ColumnType.JSON)


class Source(enum.StrEnum):
    IDENTITY = "identity"
    PROPERTY = "property"
    INPUT = "input"
    RESULT = "result"


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the per-job view and of the exports."""

    name: str  #: the column's name
    source: Source
    field: str  #: the property, input column or result field it shows
    type: ColumnType


#: Types of the result fields (the rest are strings).
_RESULT_TYPES = {
    "attempts": ColumnType.INT64,
    "input_tokens": ColumnType.INT64,
    "output_tokens": ColumnType.INT64,
    "cache_creation_input_tokens": ColumnType.INT64,
    "cache_read_input_tokens": ColumnType.INT64,
    "cost_usd": ColumnType.DOUBLE,
    "cached": ColumnType.BOOL,
    "tool_input": ColumnType.JSON,
}


def columns(output: Output | None, input_columns: Sequence[str]) -> list[Column]:
    """The columns of a job's rows, in order, with the naming rule of the module."""
    props = output.properties if output is not None else {}
    out = [
        Column(n, Source.IDENTITY, n, _RESULT_TYPES.get(n, ColumnType.STRING))
        for n in IDENTITY_COLUMNS
    ]
    out += [Column(n, Source.PROPERTY, n, column_type(s)) for n, s in props.items()]
    results = []
    for name in RESULT_COLUMNS:
        column = name
        while column in props:
            column = f"result_{column}"
        results.append(
            Column(column, Source.RESULT, name, _RESULT_TYPES.get(name, ColumnType.STRING))
        )
    taken = set(IDENTITY_COLUMNS) | set(props) | {c.name for c in results}
    for name in input_columns:
        column = name
        while column in taken:
            column = f"input_{column}"
        taken.add(column)
        out.append(Column(column, Source.INPUT, name, ColumnType.STRING))
    out += results
    return out


__all__ = [
    "DEFAULT_TOOL_NAME",
    "IDENTITY_COLUMNS",
    "INVALID_OUTPUT",
    "OUTPUT_PARAMS",
    "RESULT_COLUMNS",
    "UNSAFE_NAME",
    "Answers",
    "Column",
    "ColumnType",
    "Output",
    "OutputMode",
    "OutputSchemaError",
    "Source",
    "check_schema",
    "column_type",
    "columns",
    "read_answer",
    "with_output",
]
