"""Job specs: loading, every user-facing error message, templates and streaming items."""

from __future__ import annotations

import hashlib
import tracemalloc
from itertools import islice
from pathlib import Path

import orjson
import pytest

from orchestrator.domain.spec import JobSpec, iter_items, load_spec
from orchestrator.errors import SpecError
from tests.unit.domain.conftest import ROWS, TEMPLATE_SPEC, WriteSpec

REPO = Path(__file__).resolve().parents[3]
HEAD = 'name = "t"\ninput = "rows.jsonl"\nkey = "id"\n'
REQUEST = '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 16\n'


def spec_error(path: Path) -> str:
    """The message of the SpecError raised by loading and iterating the spec at ``path``."""
    with pytest.raises(SpecError) as caught:
        list(iter_items(load_spec(path)))
    return str(caught.value)


# --- the spec file itself ----------------------------------------------------------------


def test_template_spec_loads_with_defaults_and_absolute_paths(write_spec: WriteSpec) -> None:
    path = write_spec()
    loaded = load_spec(path)
    spec = loaded.spec
    assert loaded.path == path.resolve()
    assert spec.input == (path.parent / "rows.jsonl").resolve()
    assert spec.input.is_absolute()
    assert (spec.batching.max_requests, spec.batching.max_bytes) == (100_000, 256_000_000)
    assert spec.retry.max_attempts == 3
    assert (spec.cache, spec.budget_usd, spec.schedule, spec.api_version) == (
        True,
        None,
        None,
        None,
    )


def test_relative_paths_resolve_against_the_spec_directory(write_spec: WriteSpec) -> None:
    path = write_spec(HEAD.replace("rows.jsonl", "../data/rows.jsonl") + REQUEST, files={})
    data = path.parent.parent / "data"
    data.mkdir(exist_ok=True)
    (data / "rows.jsonl").write_text(ROWS)
    assert load_spec(path).spec.input == (data / "rows.jsonl").resolve()


def test_unknown_field_is_an_error(write_spec: WriteSpec) -> None:
    path = write_spec('colour = "red"\n' + TEMPLATE_SPEC)
    assert spec_error(path) == (
        f"{path}: colour: unknown field (allowed here: name, input, input_url, key, request, "
        "requests, batching, retry, budget_usd, schedule, cache, dedupe, api_version, "
        "allow_unknown_models, output, betas)"
    )


def test_unknown_field_in_a_section_lists_that_sections_fields(write_spec: WriteSpec) -> None:
    path = write_spec(TEMPLATE_SPEC + "[batching]\nmax_request = 5\n")
    assert spec_error(path) == (
        f"{path}: batching.max_request: unknown field (allowed here: max_requests, max_bytes)"
    )


def test_both_forms_is_an_error(write_spec: WriteSpec) -> None:
    path = write_spec(HEAD + 'requests = "r.jsonl"\n' + REQUEST + 'prompt = "x"\n')
    assert spec_error(path) == (
        f"{path}: give either input + key + [request] (template form) or requests "
        "(native form), not both (found requests and input, key, request)"
    )


def test_neither_form_is_an_error(write_spec: WriteSpec) -> None:
    path = write_spec('name = "t"\n')
    assert spec_error(path) == (
        f"{path}: nothing to send: give input + key + [request] (template form) or "
        'requests = "requests.jsonl" (native form); missing: input, key, request'
    )


def test_half_a_template_form_names_what_is_missing(write_spec: WriteSpec) -> None:
    path = write_spec('name = "t"\ninput = "rows.jsonl"\n' + REQUEST + 'prompt = "x"\n')
    assert spec_error(path).endswith("missing: key")


@pytest.mark.parametrize("name", ["my job!", "", "a" * 101, "naïve"])
def test_bad_name(write_spec: WriteSpec, name: str) -> None:
    path = write_spec(TEMPLATE_SPEC.replace('name = "t"', f'name = "{name}"'))
    assert spec_error(path) == f"{path}: name: use 1 to 100 letters, digits, '.', '_' or '-'"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "[batching]\nmax_requests = 100001\n",
            "batching.max_requests: Input should be less than or equal to 100000",
        ),
        (
            "[batching]\nmax_requests = 0\n",
            "batching.max_requests: Input should be greater than or equal to 1",
        ),
        (
            "[batching]\nmax_bytes = 256000001\n",
            "batching.max_bytes: Input should be less than or equal to 256000000",
        ),
        (
            "[retry]\nmax_attempts = 0\n",
            "retry.max_attempts: Input should be greater than or equal to 1",
        ),
    ],
)
def test_limits_out_of_range(write_spec: WriteSpec, section: str, message: str) -> None:
    path = write_spec(TEMPLATE_SPEC + section)
    assert spec_error(path) == f"{path}: {message}"


def test_several_field_errors_are_listed_one_per_line(write_spec: WriteSpec) -> None:
    path = write_spec(
        'name = "bad name"\nbudget_usd = -1\n'
        + TEMPLATE_SPEC.split("\n", 1)[1]
        + "[batching]\nmax_requests = 100001\n"
    )
    assert spec_error(path).splitlines() == [
        f"{path}: name: use 1 to 100 letters, digits, '.', '_' or '-'",
        f"{path}: batching.max_requests: Input should be less than or equal to 100000",
        f"{path}: budget_usd: Input should be greater than 0",
    ]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            "0 3 * *",
            'schedule: must be a 5-field cron expression like "0 3 * * *" '
            "(minute hour day-of-month month day-of-week); got 4 fields",
        ),
        ("0 3 * * $", "schedule: cron field '$' has characters cron does not use"),
    ],
)
def test_bad_cron(write_spec: WriteSpec, schedule: str, message: str) -> None:
    path = write_spec(f'schedule = "{schedule}"\n' + TEMPLATE_SPEC)
    assert spec_error(path) == f"{path}: {message}"


@pytest.mark.parametrize("schedule", ["0 3 * * *", "*/15 9-17 * * MON-FRI", "0 0 1,15 * ?"])
def test_good_cron(write_spec: WriteSpec, schedule: str) -> None:
    path = write_spec(f'schedule = "{schedule}"\n' + TEMPLATE_SPEC)
    assert load_spec(path).spec.schedule == schedule


def test_unknown_api_version(write_spec: WriteSpec) -> None:
    path = write_spec('api_version = "2024-01-01"\n' + TEMPLATE_SPEC)
    assert spec_error(path) == (
        f"{path}: api_version: unknown API version; use one of: 2023-06-01, 2026-10-21"
    )


def test_missing_input_file_names_the_resolved_path(write_spec: WriteSpec) -> None:
    path = write_spec(TEMPLATE_SPEC.replace("rows.jsonl", "data/missing.jsonl"), files={})
    resolved = path.parent / "data" / "missing.jsonl"
    assert spec_error(path) == f"{path}: input file not found: {resolved}"


def test_input_must_be_a_dataset_file_or_a_query(write_spec: WriteSpec) -> None:
    path = write_spec(TEMPLATE_SPEC.replace("rows.jsonl", "rows.txt"))
    assert spec_error(path) == (
        f"{path}: input: must be a .jsonl, .csv, .parquet, .arrow or .feather file, "
        '"sql:SELECT ..." or "table:NAME" (got \'rows.txt\')'
    )


def test_toml_syntax_error_names_file_and_line(write_spec: WriteSpec) -> None:
    path = write_spec('name = "t"\ninput = \nkey = "id"\n')
    message = spec_error(path)
    assert message.startswith(f"{path}:2: invalid TOML: ")
    assert "(column 9)" in message


def test_missing_spec_file(tmp_path: Path) -> None:
    assert spec_error(tmp_path / "nope.toml").startswith(f"{tmp_path / 'nope.toml'}: cannot read")


# --- templates ---------------------------------------------------------------------------


def test_prompt_and_messages_together_is_an_error(write_spec: WriteSpec) -> None:
    path = write_spec(
        HEAD + REQUEST + 'prompt = "x"\nmessages = [{role = "user", content = "y"}]\n'
    )
    assert spec_error(path) == f"{path}: request: give either prompt or messages, not both"


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{text.__class__}", "template field {text.__class__} uses attribute or index access"),
        ("{text[0]}", "template field {text[0]} uses attribute or index access"),
        ("{text!r}", "template field {text} has a conversion or format spec"),
        ("{text:>10}", "template field {text} has a conversion or format spec"),
        ("{}", "name a row field inside the braces, like {text}"),
        ("{0}", "name a row field inside the braces, like {text}"),
        ("a } b", "a } with no { before it: write }} for a literal }"),
        ("a { b", "a { with no } after it: write {{ for a literal {"),
        ("a {b", "a { with no } after it: write {{ for a literal {"),
        (
            'JSON: {\\"label\\": 1}',
            'template field {"label"...} looks like JSON; write {{ for a literal { and }} '
            "for a literal }",
        ),
    ],
)
def test_bad_templates_are_rejected_at_load(
    write_spec: WriteSpec, template: str, problem: str
) -> None:
    path = write_spec(HEAD + REQUEST + f'prompt = "{template}"\n')
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: request.prompt: {problem}")


def test_templates_render_everywhere_in_the_request_tree(write_spec: WriteSpec) -> None:
    spec = (
        HEAD
        + REQUEST
        + (
            'system = "Product: {product}"\n'
            "stop_sequences = ['{stop}']\n"
            "[[request.messages]]\n"
            'role = "user"\n'
            'content = [{type = "text", text = "{{literal}} {text} ({stars} stars){none}"}]\n'
        )
    )
    rows = (
        '{"id": 7, "text": "café ☕", "product": "mug", "stars": 4, "stop": "END", "none": null}\n'
    )
    (item,) = iter_items(load_spec(write_spec(spec, files={"rows.jsonl": rows})))
    assert item.key == "7"
    assert item.params == {
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "system": "Product: mug",
        "stop_sequences": ["END"],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "{literal} café ☕ (4 stars)"}]}
        ],
    }


def test_prompt_becomes_one_user_message(write_spec: WriteSpec) -> None:
    first = next(iter_items(load_spec(write_spec())))
    assert first.params["messages"] == [{"role": "user", "content": "Review: great"}]
    assert "prompt" not in first.params


def test_row_missing_a_template_field_names_file_line_and_template(write_spec: WriteSpec) -> None:
    rows = '{"id": "a", "text": "ok"}\n\n{"id": "b", "txt": "typo"}\n'
    path = write_spec(files={"rows.jsonl": rows})
    assert spec_error(path) == (
        f"{path.parent / 'rows.jsonl'}:3: row has no field 'text' (used in request.prompt)"
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"text": "no id"}', "row has no field 'id' (the item key)"),
        ('{"id": null, "text": "x"}', "row has no field 'id' (the item key)"),
        ('{"id": "", "text": "x"}', "row has an empty key field 'id'"),
    ],
)
def test_row_missing_its_key_names_file_and_line(
    write_spec: WriteSpec, row: str, message: str
) -> None:
    path = write_spec(files={"rows.jsonl": ROWS + row + "\n"})
    assert spec_error(path) == f"{path.parent / 'rows.jsonl'}:3: {message}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "c", "text": }', "invalid JSON at column 21: "),
        ('["id", "c"]', "expected a JSON object on each line, got array"),
        ('"just a string"', "expected a JSON object on each line, got str"),
    ],
)
def test_bad_jsonl_line_names_file_and_line(write_spec: WriteSpec, line: str, message: str) -> None:
    path = write_spec(files={"rows.jsonl": ROWS + line + "\n"})
    assert spec_error(path).startswith(f"{path.parent / 'rows.jsonl'}:3: {message}")


def test_rendered_params_are_validated_with_file_line_and_field_path(write_spec: WriteSpec) -> None:
    path = write_spec(TEMPLATE_SPEC + "temperature = 0.5\n")
    first, *rows = spec_error(path).splitlines()
    data = path.parent / "rows.jsonl"
    assert first == f"2 bad rows in {data}:"  # both rows render the same bad request
    assert [row.split(": ", 1)[0] for row in rows] == [f"{data}:1", f"{data}:2"]
    assert rows[0].startswith(
        f"{data}:1: request.temperature: Extra inputs are not permitted "
        "(temperature, top_p and top_k were removed in API version 2026-10-21"
    )


def test_api_version_2023_allows_temperature(write_spec: WriteSpec) -> None:
    path = write_spec('api_version = "2023-06-01"\n' + TEMPLATE_SPEC + "temperature = 0.5\n")
    assert [item.params["temperature"] for item in iter_items(load_spec(path))] == [0.5, 0.5]


def test_default_api_version_applies_when_the_spec_has_none(write_spec: WriteSpec) -> None:
    loaded = load_spec(write_spec(TEMPLATE_SPEC + "top_k = 5\n"))
    assert len(list(iter_items(loaded, default_api_version="2023-06-01"))) == 2


def test_a_template_that_renders_empty_content_is_caught_per_row(write_spec: WriteSpec) -> None:
    spec = HEAD + REQUEST + '[[request.messages]]\nrole = "user"\ncontent = "{text}"\n'
    path = write_spec(spec, files={"rows.jsonl": '{"id": "a", "text": ""}\n'})
    assert spec_error(path) == (
        f"{path.parent / 'rows.jsonl'}:1: request.messages.0.content: "
        "String should have at least 1 character"
    )


# --- items -------------------------------------------------------------------------------


def test_items_carry_canonical_json_and_its_hash(write_spec: WriteSpec) -> None:
    items = list(iter_items(load_spec(write_spec())))
    assert [(i.ordinal, i.key, i.line) for i in items] == [(0, "a", 1), (1, "b", 2)]
    first = items[0]
    assert first.params_json == (
        b'{"max_tokens":16,"messages":[{"content":"Review: great","role":"user"}],'
        b'"model":"claude-haiku-4-5"}'
    )
    assert orjson.loads(first.params_json) == first.params
    assert first.params_hash == hashlib.sha256(first.params_json).hexdigest()


def test_blank_lines_are_skipped_and_lines_stay_physical(write_spec: WriteSpec) -> None:
    rows = '\n{"id": "a", "text": "x"}\n   \n{"id": "b", "text": "y"}\n'
    items = list(iter_items(load_spec(write_spec(files={"rows.jsonl": rows}))))
    assert [(i.ordinal, i.line) for i in items] == [(0, 2), (1, 4)]


def test_iter_items_can_be_called_twice(write_spec: WriteSpec) -> None:
    loaded = load_spec(write_spec())
    assert list(iter_items(loaded)) == list(iter_items(loaded))


CSV_ROWS = (
    "id,product,text\n"
    'c1,mug,"great, really great"\n'
    "\n"
    'c2,"kettle ""pro""","line one\nline two, with comma"\n'
    "c3,lamp,fine\n"
)


def test_csv_with_quoted_commas_quotes_and_newlines(write_spec: WriteSpec) -> None:
    spec = TEMPLATE_SPEC.replace("rows.jsonl", "rows.csv").replace("{text}", "{product}: {text}")
    items = list(iter_items(load_spec(write_spec(spec, files={"rows.csv": CSV_ROWS}))))
    assert [(i.key, i.line, i.ordinal) for i in items] == [("c1", 2, 0), ("c2", 4, 1), ("c3", 6, 2)]
    contents = [i.params["messages"][0]["content"] for i in items]
    assert contents[1] == 'Review: kettle "pro": line one\nline two, with comma'


def test_csv_errors_name_the_line_where_the_record_starts(write_spec: WriteSpec) -> None:
    spec = TEMPLATE_SPEC.replace("rows.jsonl", "rows.csv")
    path = write_spec(spec, files={"rows.csv": CSV_ROWS + "c4,short\n"})
    assert (
        spec_error(path) == f"{path.parent / 'rows.csv'}:7: row has 2 fields but the header has 3"
    )


def test_csv_header_must_have_unique_names(write_spec: WriteSpec) -> None:
    spec = TEMPLATE_SPEC.replace("rows.jsonl", "rows.csv")
    path = write_spec(spec, files={"rows.csv": "id,text,text\n1,a,b\n"})
    assert (
        spec_error(path) == f"{path.parent / 'rows.csv'}:1: the CSV header has column 'text' twice"
    )


# --- native form -------------------------------------------------------------------------

#: "m" is no model in the table: these tests are about the native form, not models.
NATIVE_SPEC = 'name = "n"\nrequests = "requests.jsonl"\nallow_unknown_models = true\n'
NATIVE_PARAMS = '{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'


def test_native_form_uses_the_custom_id_as_key(write_spec: WriteSpec) -> None:
    lines = f'{{"custom_id": "a:b/c d", "params": {NATIVE_PARAMS}}}\n'
    (item,) = iter_items(load_spec(write_spec(NATIVE_SPEC, files={"requests.jsonl": lines})))
    assert (item.key, item.line, item.params["max_tokens"]) == ("a:b/c d", 1, 5)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f'{{"params": {NATIVE_PARAMS}}}', "row has no field 'custom_id' (the item key)"),
        ('{"custom_id": "x"}', 'line has no "params" (the Messages API params)'),
        ('{"custom_id": "x", "params": [1]}', 'line needs an object as its "params"'),
        (
            f'{{"custom_id": "x", "params": {NATIVE_PARAMS}, "method": "POST"}}',
            'unexpected field \'method\'; each line is {"custom_id": ..., "params": {...}}',
        ),
        (
            '{"custom_id": "x", "params": {"model": "m", "max_tokens": 5, "messages": []}}',
            "params.messages: List should have at least 1 item after validation, not 0",
        ),
    ],
)
def test_native_form_errors_name_file_and_line(
    write_spec: WriteSpec, line: str, message: str
) -> None:
    good = f'{{"custom_id": "ok", "params": {NATIVE_PARAMS}}}\n'
    path = write_spec(NATIVE_SPEC, files={"requests.jsonl": good + line + "\n"})
    assert spec_error(path).startswith(f"{path.parent / 'requests.jsonl'}:2: {message}")


# --- content hash ------------------------------------------------------------------------


def test_content_hash_covers_spec_and_data(write_spec: WriteSpec) -> None:
    path = write_spec()
    first = load_spec(path).content_hash
    assert load_spec(path).content_hash == first
    (path.parent / "rows.jsonl").write_text(ROWS + '{"id": "c", "text": "new"}\n')
    second = load_spec(path).content_hash
    assert second != first
    path.write_text(TEMPLATE_SPEC.replace("max_tokens = 16", "max_tokens = 17"))
    assert load_spec(path).content_hash not in (first, second)


# --- streaming ---------------------------------------------------------------------------


def test_items_stream_in_flat_memory(tmp_path: Path, write_spec: WriteSpec) -> None:
    rows = tmp_path / "rows.jsonl"
    with rows.open("w") as out:
        for n in range(200_000):
            out.write(f'{{"id": "k{n}", "text": "review number {n}, with some padding text"}}\n')
    loaded = load_spec(write_spec(files={}))
    file_bytes = rows.stat().st_size
    items = iter_items(loaded)
    next(items)  # warm up (pydantic and orjson allocate once on first use)
    tracemalloc.start()
    try:
        for item in islice(items, 20_000):
            last = item
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last.key == "k20000"
    assert peak < file_bytes / 100  # the 14 MB file is never held, nor the items behind
    assert sum(1 for _ in iter_items(loaded)) == 200_000


# --- the example jobs --------------------------------------------------------------------


def test_review_sentiment_example_loads() -> None:
    loaded = load_spec(REPO / "jobs" / "review-sentiment" / "spec.toml")
    assert loaded.spec.name == "review-sentiment"
    items = list(iter_items(loaded))
    assert len(items) == 3000
    assert len({i.key for i in items}) == 3000
    assert items[0].params["system"] == "You label the sentiment of product reviews."
    assert (
        items[0]
        .params["messages"][0]["content"]
        .endswith("\nAnswer positive, negative or neutral.")
    )


def test_native_requests_example_loads() -> None:
    loaded = load_spec(REPO / "jobs" / "native-requests" / "spec.toml")
    keys = [item.key for item in iter_items(loaded)]
    assert keys == ["capital-fr", "haiku/autumn", "translate:café", "weather tool", "multi-turn.1"]


def test_job_spec_is_frozen(write_spec: WriteSpec) -> None:
    spec = load_spec(write_spec()).spec
    with pytest.raises(Exception, match="frozen"):
        spec.name = "other"  # type: ignore[misc]
    assert isinstance(spec, JobSpec)


# --- betas -------------------------------------------------------------------------------


def test_betas_default_to_none_and_are_kept_in_order(write_spec: WriteSpec) -> None:
    assert load_spec(write_spec()).spec.betas == []
    spec = TEMPLATE_SPEC.replace('key = "id"\n', 'key = "id"\nbetas = ["b-1", "a.2_x"]\n')
    assert load_spec(write_spec(spec)).spec.betas == ["b-1", "a.2_x"]


@pytest.mark.parametrize("beta", ["", "has space", "a" * 101, "x,y", "é"])
def test_a_bad_beta_flag_is_refused(write_spec: WriteSpec, beta: str) -> None:
    spec = TEMPLATE_SPEC.replace('key = "id"\n', f'key = "id"\nbetas = ["ok", "{beta}"]\n')
    path = write_spec(spec)
    assert spec_error(path) == (
        f"{path}: betas: beta flag {beta!r}: use 1 to 100 letters, digits, '.', '_' or '-' "
        'per flag, e.g. betas = ["output-128k-2025-02-19"]'
    )


def test_betas_must_be_a_list_of_strings(write_spec: WriteSpec) -> None:
    path = write_spec(TEMPLATE_SPEC.replace('key = "id"\n', 'key = "id"\nbetas = "x"\n'))
    assert spec_error(path) == f"{path}: betas: Input should be a valid list"
