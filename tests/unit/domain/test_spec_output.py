"""A spec's ``[output]``: the schema loaded (file or inline), written into each request,
and every mistake refused with the file and field before anything is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.domain.output import OutputMode
from orchestrator.domain.spec import iter_items, load_spec
from orchestrator.errors import SpecError
from tests.unit.domain.conftest import ROWS, WriteSpec

HEAD = 'name = "t"\ninput = "rows.jsonl"\nkey = "id"\n'
REQUEST = '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 64\nprompt = "Say {text}"\n'
SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]}}}
FILES = {"rows.jsonl": ROWS, "label.json": json.dumps(SCHEMA)}


def error_of(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        list(iter_items(load_spec(path)))
    return str(caught.value)


def test_a_schema_file_is_loaded_and_asked_for_as_output_config(write_spec: WriteSpec) -> None:
    path = write_spec(HEAD + REQUEST + '[output]\nschema = "label.json"\n', FILES)

    loaded = load_spec(path)
    items = list(iter_items(loaded))

    assert loaded.output is not None
    assert (loaded.output.mode, loaded.output.schema) == (OutputMode.JSON_SCHEMA, SCHEMA)
    fmt = items[0].params["output_config"]["format"]
    assert fmt == {"type": "json_schema", "schema": SCHEMA}
    assert json.loads(items[0].input_json or b"") == json.loads(ROWS.splitlines()[0])
    assert items[0].columns == tuple(json.loads(ROWS.splitlines()[0]))


def test_an_inline_schema_in_tool_mode_becomes_a_forced_tool(write_spec: WriteSpec) -> None:
    inline = (
        '[output]\nmode = "tool"\ntool_name = "judge"\n'
        '[output.schema]\ntype = "object"\n[output.schema.properties.label]\ntype = "string"\n'
    )
    items = list(iter_items(load_spec(write_spec(HEAD + REQUEST + inline, FILES))))

    params = items[0].params
    assert params["tool_choice"] == {"type": "tool", "name": "judge"}
    assert params["tools"][0]["input_schema"]["properties"] == {"label": {"type": "string"}}


def test_the_schema_is_part_of_the_jobs_content(write_spec: WriteSpec, tmp_path: Path) -> None:
    path = write_spec(HEAD + REQUEST + '[output]\nschema = "label.json"\n', FILES)
    before = load_spec(path).content_hash
    (tmp_path / "label.json").write_text(json.dumps({**SCHEMA, "required": ["label"]}))
    assert load_spec(path).content_hash != before


@pytest.mark.parametrize(
    ("output", "files", "expected"),
    [
        ('schema = "nope.json"', {}, "output.schema: cannot read nope.json"),
        ('schema = "bad.json"', {"bad.json": "{"}, "bad.json:1: not JSON"),
        ('schema = "arr.json"', {"arr.json": "[]"}, "the output schema must be a JSON object"),
        (
            'schema = "label.json"\nmode = "xml"',
            {},
            "output.mode: Input should be 'json_schema' or 'tool'",
        ),
        ('schema = "label.json"\ntool_name = "a b"', {}, "output.tool_name"),
        ('schema = "label.json"\ncolour = 1', {}, "output.colour: unknown field"),
    ],
)
def test_a_bad_output_section_names_what_to_fix(
    write_spec: WriteSpec, output: str, files: dict[str, str], expected: str
) -> None:
    path = write_spec(HEAD + REQUEST + f"[output]\n{output}\n", {**FILES, **files})
    assert expected in error_of(path)


def test_a_request_that_writes_its_own_tools_is_refused(write_spec: WriteSpec) -> None:
    request = REQUEST + 'tool_choice = {type = "auto"}\n'
    path = write_spec(HEAD + request + '[output]\nschema = "label.json"\n', FILES)
    assert "request.tool_choice: [output] writes tools, tool_choice and output_config" in (
        error_of(path)
    )


def test_thinking_with_a_forced_tool_is_refused(write_spec: WriteSpec) -> None:
    request = REQUEST + 'thinking = {type = "enabled", budget_tokens = 1024}\n'
    output = '[output]\nschema = "label.json"\nmode = "tool"\n'
    assert "request.thinking: a forced tool can't be combined with thinking" in error_of(
        write_spec(HEAD + request + output, FILES)
    )


def test_a_native_line_that_writes_its_own_output_config_is_refused(
    write_spec: WriteSpec,
) -> None:
    line = {
        "custom_id": "c1",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
            "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
        },
    }
    spec = 'name = "n"\nrequests = "requests.jsonl"\n[output]\nschema = "label.json"\n'
    files = {"requests.jsonl": json.dumps(line) + "\n", "label.json": json.dumps(SCHEMA)}
    assert "requests.jsonl:1: params.output_config: [output] writes this itself" in error_of(
        write_spec(spec, files)
    )
