"""Templates: typed params from columns (``max_tokens = "{mt}"``) and literal braces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.spec import iter_items, load_spec
from orchestrator.domain.templates import MissingField, compile_request, render_request
from orchestrator.errors import SpecError
from tests.unit.domain.conftest import WriteSpec

HEAD = 'name = "t"\ninput = "rows.csv"\nkey = "id"\napi_version = "2023-06-01"\n'


def spec(*params: str) -> str:
    lines = ['model = "claude-haiku-4-5"', 'prompt = "Review: {text}"', *params]
    if not any(line.startswith("max_tokens") for line in params):
        lines.append("max_tokens = 16")
    return HEAD + "[request]\n" + "\n".join(lines) + "\n"


def rendered(write_spec: WriteSpec, text: str, csv: str) -> list[dict[str, Any]]:
    path = write_spec(text, files={"rows.csv": csv})
    return [item.params for item in iter_items(load_spec(path))]


def error_of(write_spec: WriteSpec, text: str, csv: str) -> str:
    path = write_spec(text, files={"rows.csv": csv})
    with pytest.raises(SpecError) as caught:
        list(iter_items(load_spec(path)))
    return str(caught.value)


# --- typed params ------------------------------------------------------------------------


def test_a_csv_string_becomes_the_integer_max_tokens_wants(write_spec: WriteSpec) -> None:
    csv = "id,text,mt\na,x,64\nb,y, 8 \nc,z,32.0\n"
    params = rendered(write_spec, spec('max_tokens = "{mt}"'), csv)
    assert [p["max_tokens"] for p in params] == [64, 8, 32]
    assert all(type(p["max_tokens"]) is int for p in params)


def test_numbers_and_booleans_from_csv(write_spec: WriteSpec) -> None:
    csv = "id,text,t,p,k,par\na,x,0.5,1,5,true\nb,y,.25,0.9,0,FALSE\nc,z,1e-1,0,3,1\n"
    params = rendered(
        write_spec,
        spec(
            'temperature = "{t}"',
            'top_p = "{p}"',
            'top_k = "{k}"',
            'tool_choice = { type = "auto", disable_parallel_tool_use = "{par}" }',
            'tools = [{ name = "f", input_schema = { type = "object" } }]',
        ),
        csv,
    )
    assert [(p["temperature"], p["top_p"], p["top_k"]) for p in params] == [
        (0.5, 1, 5),
        (0.25, 0.9, 0),
        (0.1, 0, 3),
    ]
    assert [p["tool_choice"]["disable_parallel_tool_use"] for p in params] == [True, False, True]


def test_typed_values_keep_their_type_from_jsonl(write_spec: WriteSpec) -> None:
    text = spec(
        'max_tokens = "{mt}"',
        'thinking = { type = "enabled", budget_tokens = "{budget}" }',
    ).replace("rows.csv", "rows.jsonl")
    text = text.replace("claude-haiku-4-5", "claude-sonnet-4-6")
    rows = '{"id": "a", "text": "x", "mt": 4096, "budget": 2048.0}\n'
    path = write_spec(text, files={"rows.jsonl": rows})
    (item,) = iter_items(load_spec(path))
    assert (item.params["max_tokens"], item.params["thinking"]["budget_tokens"]) == (4096, 2048)


@pytest.mark.parametrize(
    ("param", "value", "problem"),
    [
        (
            'max_tokens = "{v}"',
            "abc",
            "request.max_tokens: needs an integer, but the row's 'v' is 'abc'",
        ),
        (
            'max_tokens = "{v}"',
            "64.5",
            "request.max_tokens: needs an integer, but the row's 'v' is '64.5'",
        ),
        (
            'max_tokens = "{v}"',
            "",
            "request.max_tokens: needs an integer, but the row's 'v' is empty",
        ),
        (
            'temperature = "{v}"',
            "hot",
            "request.temperature: needs a number, but the row's 'v' is 'hot'",
        ),
        (
            'temperature = "{v}"',
            "nan",
            "request.temperature: needs a number, but the row's 'v' is 'nan'",
        ),
        (
            'tool_choice = { type = "any", disable_parallel_tool_use = "{v}" }',
            "yes",
            "request.tool_choice.disable_parallel_tool_use: needs a boolean, but the row's 'v' "
            "is 'yes'",
        ),
        (
            'max_tokens = "{v}"',
            "-3",
            "request.max_tokens: Input should be greater than or equal to 1",
        ),
    ],
)
def test_a_value_that_is_not_the_type_names_the_row_and_field(
    write_spec: WriteSpec, param: str, value: str, problem: str
) -> None:
    csv = f"id,text,v\na,x,{value}\n"
    message = error_of(write_spec, spec(param), csv)
    assert message == f"{Path(write_spec().parent / 'rows.csv')}:2: {problem}"


def test_a_missing_column_for_a_typed_param(write_spec: WriteSpec) -> None:
    message = error_of(write_spec, spec('max_tokens = "{mt}"'), "id,text\na,x\n")
    assert message.endswith("rows.csv:2: row has no field 'mt' (used in request.max_tokens)")


def test_only_a_whole_placeholder_is_typed(write_spec: WriteSpec) -> None:
    message = error_of(write_spec, spec('max_tokens = "{a}{b}"'), "id,text,a,b\nk,x,1,6\n")
    assert message.endswith("rows.csv:2: request.max_tokens: Input should be a valid integer")


def test_text_params_stay_text(write_spec: WriteSpec) -> None:
    rows = '{"id": "a", "text": 4, "sys": true, "stop": 5}\n'
    text = spec('system = "{sys}"', 'stop_sequences = ["{stop}"]').replace("rows.csv", "rows.jsonl")
    path = write_spec(text, files={"rows.jsonl": rows})
    (item,) = iter_items(load_spec(path))
    assert item.params["system"] == "True"
    assert item.params["stop_sequences"] == ["5"]
    assert item.params["messages"][0]["content"] == "Review: 4"


def test_render_request_types_nested_params() -> None:
    compiled = compile_request(
        {
            "max_tokens": "{mt}",
            "messages": [{"role": "user", "content": "{q}"}],
            "x": {"top_k": "{k}"},
        }
    )
    assert render_request(compiled, {"mt": "7", "q": "5", "k": 2}) == {
        "max_tokens": 7,
        "messages": [{"role": "user", "content": "5"}],
        "x": {"top_k": 2},
    }
    with pytest.raises(MissingField, match=r"row has no field 'mt' \(used in request.max_tokens\)"):
        render_request(compiled, {"q": "x", "k": 1})


# --- literal braces ----------------------------------------------------------------------


def test_doubled_braces_are_literal(write_spec: WriteSpec) -> None:
    text = spec().replace('"Review: {text}"', '"Answer as {{\\"label\\": ...}} for {text}"')
    (params,) = rendered(write_spec, text, "id,text\na,cats\n")
    assert params["messages"][0]["content"] == 'Answer as {"label": ...} for cats'


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("a } b", "a } with no { before it: write }} for a literal }"),
        ("a { b", "a { with no } after it: write {{ for a literal {"),
        ("{text", "a { with no } after it: write {{ for a literal {"),
        ("{}", "name a row field inside the braces, like {text} (write {{ for a literal {"),
        (
            'as {\\"label\\": \\"x\\"}',
            'template field {"label"...} looks like JSON; write {{ for a literal { and }} for a '
            "literal }",
        ),
        (
            "{text!r}",
            "template field {text} has a conversion or format spec; only plain {field} names "
            "are allowed (write {{ for a literal { and }} for a literal })",
        ),
    ],
)
def test_stray_braces_say_how_to_write_a_literal_brace(
    write_spec: WriteSpec, template: str, problem: str
) -> None:
    path = write_spec(spec().replace("Review: {text}", template), files={"rows.csv": "id\n"})
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: request.prompt: {problem}")
