"""Per-row checks beyond the params schema: the model table (unknown model, max_tokens above
the model's limit, thinking), every bad row reported up to a cap, and invalid UTF-8 named
by its own line.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.params import ParamsError, check_model
from orchestrator.domain.pricing import PriceTable
from orchestrator.domain.spec import (
    MAX_REPORTED_ROWS,
    BadRows,
    BadRowsError,
    iter_items,
    load_spec,
)
from orchestrator.errors import SpecError
from tests.unit.domain.conftest import WriteSpec

HEAD = 'name = "t"\ninput = "rows.jsonl"\nkey = "id"\n'
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def params(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": USER}
    return {**base, **changes}


def spec_text(model: str = "claude-haiku-4-5", max_tokens: int = 16, extra: str = "") -> str:
    return (
        HEAD
        + extra
        + f'[request]\nmodel = "{model}"\nmax_tokens = {max_tokens}\nprompt = "Review: {{text}}"\n'
    )


def jsonl(n: int) -> str:
    return "".join(f'{{"id": "k{i}", "text": "row {i}"}}\n' for i in range(1, n + 1))


def spec_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as caught:
        list(iter_items(load_spec(path)))
    return caught.value


# --- check_model: the model table ---------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        pytest.param(
            {"model": "claude-foo"},
            "model",
            "unknown model 'claude-foo'; known: claude-fable-5, ",
            id="unknown-model",
        ),
        pytest.param(
            {"model": "claude-haiku-4-5x"},
            "model",
            "unknown model 'claude-haiku-4-5x'",
            id="not-a-dated-variant",
        ),
        pytest.param(
            {"max_tokens": 64_001},
            "max_tokens",
            "64,001 is more than claude-haiku-4-5 can produce: at most 64,000 output tokens",
            id="haiku-4-5-over-64k",
        ),
        pytest.param(
            {"model": "claude-haiku-4-5-20251001", "max_tokens": 64_001},
            "max_tokens",
            "64,001 is more than claude-haiku-4-5-20251001 can produce: at most 64,000",
            id="dated-id-has-its-rows-limit",
        ),
        pytest.param(
            {"model": "claude-opus-5", "max_tokens": 128_001},
            "max_tokens",
            "at most 128,000 output tokens",
            id="opus-5-over-128k",
        ),
        pytest.param(
            {"model": "claude-opus-4-1", "max_tokens": 32_001},
            "model",
            "claude-opus-4-1 was retired on 2026-08-05 and the API refuses it; use "
            "claude-opus-4-8 instead",
            id="opus-4-1-retired",
        ),
        pytest.param(
            {"model": "claude-3-5-haiku-latest", "max_tokens": 8193},
            "model",
            "was retired on 2026-02-19 and the API refuses it; use claude-haiku-4-5 instead",
            id="haiku-3-5-retired",
        ),
        pytest.param(
            {"model": "claude-opus-4-6", "max_tokens": 300_000},
            "max_tokens",
            "at most 128,000 output tokens",
            id="over-128k-without-the-300k-beta",
        ),
    ],
)
def test_check_model_refuses(
    table: PriceTable, changes: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ParamsError) as caught:
        check_model(params(**changes), table)
    assert caught.value.path == path
    assert message in caught.value.message


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="haiku-4-5"),
        pytest.param({"max_tokens": 64_000}, id="exactly-the-limit"),
        pytest.param({"model": "claude-haiku-4-5-20251001"}, id="dated-id"),
        pytest.param({"model": "claude-sonnet-4-6", "max_tokens": 128_000}, id="sonnet-4-6-128k"),
        pytest.param({"model": "claude-haiku-5-5", "max_tokens": 128_000}, id="haiku-5-5-128k"),
        pytest.param({"model": "claude-fable-5-2", "max_tokens": 128_000}, id="fable-5-2"),
        pytest.param({"model": "claude-opus-4-6", "thinking": {"type": "adaptive"}}, id="thinking"),
    ],
)
def test_check_model_accepts(table: PriceTable, changes: dict[str, Any]) -> None:
    check_model(params(**changes), table)


def test_unknown_model_message_lists_the_table_and_says_how_to_allow_it(
    table: PriceTable,
) -> None:
    with pytest.raises(ParamsError) as caught:
        check_model(params(model="claude-foo"), table)
    message = caught.value.message
    assert all(model in message for model in table.available_ids(datetime.now(UTC).date()))
    assert message.endswith(
        "set allow_unknown_models = true in the spec for models newer than this table"
    )


def test_allow_unknown_lets_unknown_models_through_but_still_checks_known_ones(
    table: PriceTable,
) -> None:
    check_model(params(model="claude-foo", max_tokens=10**6), table, allow_unknown=True)
    with pytest.raises(ParamsError, match="at most 64,000"):
        check_model(params(max_tokens=10**6), table, allow_unknown=True)


# --- through the spec: row and field named ------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            spec_text(model="claude-foo"),
            "rows.jsonl:1: request.model: unknown model 'claude-foo'; known: ",
            id="template-unknown-model",
        ),
        pytest.param(
            spec_text(max_tokens=70_000),
            "rows.jsonl:1: request.max_tokens: 70,000 is more than claude-haiku-4-5 can "
            "produce: at most 64,000 output tokens; lower max_tokens",
            id="template-max-tokens",
        ),
    ],
)
def test_model_problems_name_row_and_field(write_spec: WriteSpec, spec: str, expected: str) -> None:
    path = write_spec(spec, files={"rows.jsonl": jsonl(1)})
    assert str(spec_error(path)).startswith(f"{path.parent / expected}")


def test_native_form_names_params_model(write_spec: WriteSpec) -> None:
    def line(key: str, model: str) -> str:
        request = {"custom_id": key, "params": params(model=model, max_tokens=5)}
        return json.dumps(request) + "\n"

    spec = 'name = "n"\nrequests = "requests.jsonl"\n'
    lines = line("a", "claude-haiku-4-5") + line("b", "gpt-4o")
    path = write_spec(spec, files={"requests.jsonl": lines})
    assert str(spec_error(path)).startswith(
        f"{path.parent / 'requests.jsonl'}:2: params.model: unknown model 'gpt-4o'"
    )


def test_allow_unknown_models_in_the_spec(write_spec: WriteSpec) -> None:
    spec = spec_text(model="claude-sonnet-9", extra="allow_unknown_models = true\n")
    path = write_spec(spec, files={"rows.jsonl": jsonl(3)})
    loaded = load_spec(path)
    assert loaded.spec.allow_unknown_models is True
    assert [item.params["model"] for item in iter_items(loaded)] == ["claude-sonnet-9"] * 3


def test_allow_unknown_models_must_be_a_bool(write_spec: WriteSpec) -> None:
    path = write_spec(spec_text(extra='allow_unknown_models = "yes"\n'))
    assert str(spec_error(path)) == f"{path}: allow_unknown_models: Input should be a valid boolean"


def test_iter_items_uses_the_table_it_is_given(write_spec: WriteSpec, tmp_path: Path) -> None:
    table = tmp_path / "models.json"
    table.write_text(
        '{"as_of": "2026-11-22", "source": "test", "lifecycle_source": "test",'
        ' "batch_discount": 0.5, "limits_as_of": "x", "limits_source": "test",'
        ' "prices": [{"models": ["claude-haiku-4-5"], "input": 1, "cache_write_5m": 1,'
        ' "cache_write_1h": 1, "cache_read": 1, "output": 1, "as_of": "x", "source": "t",'
        ' "max_output_tokens": 10}]}'
    )
    loaded = load_spec(write_spec(spec_text(max_tokens=16), files={"rows.jsonl": jsonl(1)}))
    assert len(list(iter_items(loaded))) == 1  # the shipped table: 64,000
    with pytest.raises(SpecError, match="at most 10 output tokens"):
        list(iter_items(loaded, models=PriceTable.load(table)))


# --- every bad row, up to a cap -----------------------------------------------------------


def test_every_bad_row_is_listed_in_file_order(write_spec: WriteSpec) -> None:
    rows = jsonl(6).splitlines()
    rows[1] = '{"id": "k2", "txt": "typo"}'
    rows[3] = "[1, 2]"
    rows[4] = '{"text": "no key"}'
    path = write_spec(spec_text(), files={"rows.jsonl": "\n".join(rows) + "\n"})
    error = spec_error(path)
    data = path.parent / "rows.jsonl"
    assert isinstance(error, BadRowsError)
    assert str(error).splitlines() == [
        f"3 bad rows in {data}:",
        f"{data}:2: row has no field 'text' (used in request.prompt)",
        f"{data}:4: expected a JSON object on each line, got array",
        f"{data}:5: row has no field 'id' (the item key)",
    ]
    assert (error.location, error.total, len(error.rows)) == (f"{data}:2", 3, 3)


@pytest.mark.parametrize(
    ("bad", "listed", "tail"),
    [
        (2, 2, None),
        (MAX_REPORTED_ROWS, MAX_REPORTED_ROWS, None),
        (MAX_REPORTED_ROWS + 1, MAX_REPORTED_ROWS, "... and 1 more bad row"),
        (25, MAX_REPORTED_ROWS, "... and 5 more bad rows"),
        (1234, MAX_REPORTED_ROWS, "... and 1,214 more bad rows"),
    ],
)
def test_bad_rows_are_listed_up_to_the_cap(
    write_spec: WriteSpec, bad: int, listed: int, tail: str | None
) -> None:
    # Every other row lacks "text"; the messages differ by row so none is folded.
    rows = [
        f'{{"id": "k{i}", "t{i}": "x"}}' if i % 2 else f'{{"id": "k{i}", "text": "x"}}'
        for i in range(1, 2 * bad + 1)
    ]
    path = write_spec(spec_text(), files={"rows.jsonl": "\n".join(rows) + "\n"})
    lines = str(spec_error(path)).splitlines()
    data = path.parent / "rows.jsonl"
    assert lines[0] == f"{bad:,} bad rows in {data}:"
    row_lines = [line for line in lines[1:] if line.startswith(f"{data}:")]
    assert len(row_lines) == listed
    assert row_lines[0].startswith(f"{data}:1: ")
    assert lines[-1] == (tail or row_lines[-1])


def test_one_bad_row_is_a_single_line(write_spec: WriteSpec) -> None:
    rows = jsonl(3).replace('"text": "row 2"', '"txt": "row 2"')
    path = write_spec(spec_text(), files={"rows.jsonl": rows})
    error = spec_error(path)
    assert not isinstance(error, BadRowsError)
    assert str(error) == (
        f"{path.parent / 'rows.jsonl'}:2: row has no field 'text' (used in request.prompt)"
    )


def test_a_problem_repeated_from_the_row_above_is_not_spelled_again(
    write_spec: WriteSpec,
) -> None:
    path = write_spec(spec_text(model="claude-foo"), files={"rows.jsonl": jsonl(3)})
    data = path.parent / "rows.jsonl"
    first, one, two, three = str(spec_error(path)).splitlines()
    assert first == f"3 bad rows in {data}:"
    assert one.startswith(f"{data}:1: request.model: unknown model 'claude-foo'")
    assert (two, three) == (
        f"{data}:2: same problem as the row above",
        f"{data}:3: same problem as the row above",
    )


def test_good_rows_still_stream_before_the_bad_rows_are_raised(write_spec: WriteSpec) -> None:
    rows = jsonl(4).replace('"text": "row 3"', '"txt": "row 3"')
    loaded = load_spec(write_spec(spec_text(), files={"rows.jsonl": rows}))
    seen: list[str] = []
    with pytest.raises(SpecError, match=":3: row has no field 'text'"):
        seen.extend(item.key for item in iter_items(loaded))
    assert seen == ["k1", "k2", "k4"]


def test_a_given_collector_gets_the_bad_rows_and_nothing_is_raised(
    write_spec: WriteSpec,
) -> None:
    rows = jsonl(4).replace('"text": "row 3"', '"txt": "row 3"')
    loaded = load_spec(write_spec(spec_text(), files={"rows.jsonl": rows}))
    bad = BadRows("rows.jsonl", note="nothing was recorded")
    assert [item.key for item in iter_items(loaded, bad_rows=bad)] == ["k1", "k2", "k4"]
    assert (bool(bad), bad.count) == (True, 1)
    bad.add(SpecError("another", location="rows.jsonl:9"))
    with pytest.raises(BadRowsError) as caught:
        bad.raise_if_any()
    assert str(caught.value).splitlines()[0] == "2 bad rows in rows.jsonl (nothing was recorded):"


def test_bad_rows_collector_keeps_only_the_cap() -> None:
    bad = BadRows("f.jsonl", cap=3)
    bad.raise_if_any()  # nothing collected: no error
    for line in range(1, 1001):
        bad.add(SpecError(f"problem {line}", location=f"f.jsonl:{line}"))
    error = bad.error()
    assert isinstance(error, BadRowsError)
    assert str(error).splitlines() == [
        "1,000 bad rows in f.jsonl:",
        "f.jsonl:1: problem 1",
        "f.jsonl:2: problem 2",
        "f.jsonl:3: problem 3",
        "... and 997 more bad rows",
    ]
    assert len(error.rows) == 3


def test_a_problem_that_stops_the_reading_comes_with_the_rows_before_it(
    write_spec: WriteSpec,
) -> None:
    spec = spec_text().replace("rows.jsonl", "rows.csv")
    too_long = "x" * (csv.field_size_limit() + 1)  # the csv module gives up on the file
    csv_rows = f"id,text\na,x\nb\nc,{too_long}\nd,y\n"
    path = write_spec(spec, files={"rows.csv": csv_rows})
    data = path.parent / "rows.csv"
    lines = str(spec_error(path)).splitlines()
    assert lines[0] == f"2 bad rows in {data}:"
    assert lines[1] == f"{data}:3: row has 1 fields but the header has 2"
    limit = csv.field_size_limit()
    assert lines[2] == f"{data}:4: unreadable CSV: field larger than field limit ({limit})"
    assert len(lines) == 3


# --- invalid UTF-8 names its own line -----------------------------------------------------


def _bytes_with_bad_line(lines: list[str], line_no: int, bad: bytes) -> bytes:
    encoded = [line.encode() for line in lines]
    encoded[line_no - 1] = encoded[line_no - 1].replace(b"BAD", bad)
    return b"".join(encoded)


@pytest.mark.parametrize(
    ("suffix", "lines", "line_no", "bad", "message"),
    [
        pytest.param(
            ".jsonl",
            [f'{{"id": "k{i}", "text": "caf{"BAD" if i == 7 else "e"}"}}\n' for i in range(1, 10)],
            7,
            b"\xe9",
            "not valid UTF-8 (byte 0xe9 at column 26)",
            id="jsonl-latin1-e-acute",
        ),
        pytest.param(
            ".jsonl",
            ['{"id": "k1", "text": "ok"}\n', '{"id": "k2", "text": "é BAD"}\n'],
            2,
            b"\xff",
            "not valid UTF-8 (byte 0xff at column 25)",  # columns count characters
            id="jsonl-column-after-multibyte",
        ),
        pytest.param(
            ".csv",
            ["id,text\n", *[f"k{i},caf{'BAD' if i == 7 else 'e'}\n" for i in range(2, 12)]],
            7,
            b"\xe9",
            "not valid UTF-8 (byte 0xe9 at column 7)",
            id="csv-latin1-e-acute",
        ),
        pytest.param(
            ".csv",
            ["id,text\n", "k2,ok\n", 'k3,"two\r\n', 'lines BAD"\r\n', "k4,ok\n"],
            4,
            b"\x80",
            "not valid UTF-8 (byte 0x80 at column 7)",
            id="csv-bad-byte-inside-a-quoted-multiline-field",
        ),
        pytest.param(
            ".csv",
            ["id,tBADext\n", "k2,ok\n"],
            1,
            b"\xc3",
            "not valid UTF-8 (byte 0xc3 at column 5)",
            id="csv-header",
        ),
    ],
)
def test_invalid_utf8_names_its_line_byte_and_column(
    write_spec: WriteSpec,
    tmp_path: Path,
    suffix: str,
    lines: list[str],
    line_no: int,
    bad: bytes,
    message: str,
) -> None:
    path = write_spec(spec_text().replace("rows.jsonl", f"rows{suffix}"), files={})
    data = tmp_path / f"rows{suffix}"
    # More than one 8 KiB block: a text-mode reader failed while decoding the block that
    # holds the bad line, before the CSV parser got there, and so named the wrong line.
    padding = [f'{{"id": "p{i}", "text": "{"x" * 100}"}}\n' for i in range(100)]
    if suffix == ".csv":
        padding = [f"p{i},{'x' * 100}\n" for i in range(100)]
    body = _bytes_with_bad_line(lines, line_no, bad) + "".join(padding).encode()
    data.write_bytes(body)
    assert str(spec_error(path)) == f"{data}:{line_no}: {message}"


def test_a_bom_is_still_accepted(write_spec: WriteSpec, tmp_path: Path) -> None:
    spec = spec_text().replace("rows.jsonl", "rows.csv")
    path = write_spec(spec, files={})
    (tmp_path / "rows.csv").write_bytes(b"\xef\xbb\xbfid,text\nk1,caf\xc3\xa9\r\nk2,b\rk3,c\n")
    items = list(iter_items(load_spec(path)))
    assert [(i.key, i.line) for i in items] == [("k1", 2), ("k2", 3), ("k3", 4)]
    assert items[0].params["messages"][0]["content"] == "Review: café"


def test_a_spec_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_bytes(spec_text().encode().replace(b'key = "id"', b'key = "\xe9"'))
    assert (
        str(spec_error(path))
        == f"{path}:3: the job spec is not valid UTF-8 (byte 0xe9 at column 8)"
    )
