"""domain.output: checking a declared schema, asking for it, reading answers, laying out
the columns."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrator.domain.output import (
    Answers,
    ColumnType,
    Output,
    OutputMode,
    OutputSchemaError,
    Source,
    columns,
    with_output,
)
from orchestrator.domain.params import ParamsError

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["yes", "no"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "count": {"type": "integer"},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "text": {"type": ["string", "null"]},
    },
    "required": ["label", "score"],
    "additionalProperties": False,
}


def json_output() -> Output:
    return Output.checked(SCHEMA, OutputMode.JSON_SCHEMA)


def tool_output() -> Output:
    return Output.checked(SCHEMA, OutputMode.TOOL, "judge")


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ([], "must be a JSON object"),
        ({"type": "array", "items": {}}, 'must describe an object (type "object")'),
        ({"type": "object"}, "must have properties"),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "not a valid JSON Schema"),
        ({"properties": {"status": {"type": "string"}}}, "'status' would hide the column"),
        ({"properties": {'a"b': {"type": "string"}}}, "can't be a column name"),
    ],
)
def test_an_unusable_schema_is_refused_with_the_reason(schema: object, problem: str) -> None:
    with pytest.raises(OutputSchemaError, match=re.escape(problem)):
        Output.checked(schema, OutputMode.JSON_SCHEMA)


def test_each_mode_asks_for_the_schema_in_the_apis_form() -> None:
    assert json_output().request_params() == {
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}
    }
    params = tool_output().request_params()
    assert params["tool_choice"] == {"type": "tool", "name": "judge"}
    assert [(t["name"], t["input_schema"]) for t in params["tools"]] == [("judge", SCHEMA)]


def test_params_that_ask_for_their_own_output_are_refused() -> None:
    base = {"model": "m", "max_tokens": 5, "messages": []}
    assert with_output(base, json_output())["output_config"]["format"]["type"] == "json_schema"
    for name in ("tools", "tool_choice", "output_config"):
        with pytest.raises(ParamsError) as caught:
            with_output({**base, name: {}}, tool_output())
        assert caught.value.path == name


@pytest.mark.parametrize(
    ("mode", "content", "stop_reason", "stored", "problem"),
    [
        ("json", [{"type": "text", "text": '{"label": "yes", "score": 0.5}'}], "end_turn",
         '{"label":"yes","score":0.5}', None),
        ("json", [{"type": "text", "text": '{"label": "yes", "sc'}], "max_tokens",
         None, "not JSON .* \\(cut at max_tokens\\)"),
        ("json", [{"type": "text", "text": '{"label": "maybe", "score": 0.5}'}], "end_turn",
         None, "label: 'maybe' is not one of \\['yes', 'no'\\]"),
        ("json", [{"type": "text", "text": '{"label": "no"}'}], "end_turn",
         None, "'score' is a required property"),
        ("json", [{"type": "text", "text": '{"label": "no", "score": 2}'}], "end_turn",
         None, "score: 2 is greater than the maximum of 1"),
        ("tool", [{"type": "tool_use", "name": "judge", "id": "t", "input": {"label": "no",
          "score": 1}}], "tool_use", '{"label":"no","score":1}', None),
        ("tool", [{"type": "tool_use", "name": "judge", "id": "t", "input": {"score": 1}}],
         "tool_use", None, "'label' is a required property"),
        ("tool", [{"type": "text", "text": "I won't"}], "refusal",
         None, "no call of the tool 'judge' \\(the model refused\\)"),
    ],
)  # fmt: skip
def test_answers_are_read_and_validated(
    mode: str,
    content: list[dict[str, Any]],
    stop_reason: str,
    stored: str | None,
    problem: str | None,
) -> None:
    answers = Answers(json_output() if mode == "json" else tool_output())
    got, why = answers.read(content, stop_reason)
    assert got == stored
    if problem is None:
        assert why is None
    else:
        assert why is not None
        assert re.search(problem, why), why


def test_columns_type_properties_and_rename_clashes() -> None:
    layout = columns(json_output(), ["id", "label", "text", "result_type", "input_label"])
    names = [c.name for c in layout]
    assert names[:5] == ["job_name", "key", "custom_id", "attempts", "status"]
    assert names[5:11] == ["label", "score", "count", "flag", "tags", "text"]
    inputs = [(c.field, c.name) for c in layout if c.source is Source.INPUT]
    assert inputs == [
        ("id", "id"),
        ("label", "input_label"),  # a property's name
        ("text", "input_text"),  # a property's (and a result field's) name
        ("result_type", "input_result_type"),  # a result field's name
        ("input_label", "input_input_label"),  # taken by the renamed one above
    ]
    results = {c.field: c.name for c in layout if c.source is Source.RESULT}
    assert results["text"] == "result_text"  # the property took "text"
    assert results["result_type"] == "result_type"
    assert len(set(names)) == len(names)
    types = {c.name: c.type for c in layout}
    assert (types["label"], types["score"], types["count"]) == (
        ColumnType.STRING,
        ColumnType.DOUBLE,
        ColumnType.INT64,
    )
    assert (types["flag"], types["tags"], types["text"]) == (
        ColumnType.BOOL,
        ColumnType.JSON,
        ColumnType.STRING,  # ["string", "null"]: a nullable string
    )


def test_a_job_without_output_has_only_identity_input_and_result_columns() -> None:
    layout = columns(None, ["q"])
    assert {c.source for c in layout} == {Source.IDENTITY, Source.INPUT, Source.RESULT}
    assert [c.name for c in layout if c.source is Source.INPUT] == ["q"]
