"""Validation through ``submit_spec`` on SQLite and PostgreSQL: unknown models and too-large
``max_tokens`` are refused before any spend, every bad row is reported (up to a cap), a
byte that is not UTF-8 is named by its line, and a refused spec leaves nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from orchestrator.domain.spec import MAX_REPORTED_ROWS
from orchestrator.errors import SpecError
from orchestrator.steps import StepContext
from orchestrator.store.tables import Item, Job
from tests.integration.conftest import rows_in_store, submit_job, write_job

#: More rows than the store writes per chunk, so bad rows come after a flushed chunk.
ROWS = 1500
HAIKU = '"claude-haiku-4-5"'


def _refusal(ctx: StepContext, spec: Path) -> str:
    with pytest.raises(SpecError) as caught:
        submit_job(ctx, spec)
    return str(caught.value)


def _rows(n: int, **per_row: Any) -> list[dict[str, Any]]:
    return [{"id": f"k{i}", "t": f"text {i}", **per_row} for i in range(n)]


def _model_from_row(spec: Path) -> None:
    """Template the model on the row's ``m`` field, so one row can name another model."""
    spec.write_text(spec.read_text().replace(f"model = {HAIKU}", 'model = "{m}"'))


def test_unknown_model_is_refused_naming_row_and_field_and_nothing_is_written(
    ctx: StepContext, tmp_path: Path
) -> None:
    rows = _rows(ROWS, m="claude-haiku-4-5")
    rows[1200]["m"] = "claude-foo"
    spec = write_job(tmp_path, "unknown-model", ROWS, rows=rows)
    _model_from_row(spec)

    message = _refusal(ctx, spec)

    assert message.startswith(
        f"{tmp_path / 'rows.jsonl'}:1201: request.model: unknown model 'claude-foo'; known: "
    )
    assert "claude-haiku-4-5" in message
    assert message.endswith(
        "set allow_unknown_models = true in the spec for models newer than this table"
    )
    assert rows_in_store(ctx) == (0, 0)


def test_allow_unknown_models_lets_it_through(ctx: StepContext, tmp_path: Path) -> None:
    rows = _rows(20, m="claude-haiku-4-5")
    rows[7]["m"] = "claude-foo"
    spec = write_job(tmp_path, "new-model", 20, rows=rows, options="allow_unknown_models = true")
    _model_from_row(spec)

    job_id, created = submit_job(ctx, spec)

    assert created
    assert rows_in_store(ctx) == (1, 20)
    with ctx.store.engine.connect() as conn:
        spec_json = conn.execute(select(Job.spec).where(Job.id == job_id)).scalar_one()
        params = conn.execute(select(Item.params).where(Item.key == "k7")).scalar_one()
    assert spec_json["allow_unknown_models"] is True
    assert json.loads(params)["model"] == "claude-foo"


def test_max_tokens_above_the_models_limit_is_refused(ctx: StepContext, tmp_path: Path) -> None:
    spec = write_job(tmp_path, "too-long", 3)
    spec.write_text(spec.read_text().replace("max_tokens = 8", "max_tokens = 64001"))

    lines = _refusal(ctx, spec).splitlines()

    data = tmp_path / "rows.jsonl"
    assert lines == [
        f"3 bad rows in {data} (nothing was recorded):",
        f"{data}:1: request.max_tokens: 64,001 is more than claude-haiku-4-5 can produce: "
        "at most 64,000 output tokens; lower max_tokens",
        f"{data}:2: same problem as the row above",
        f"{data}:3: same problem as the row above",
    ]
    assert rows_in_store(ctx) == (0, 0)


def test_max_tokens_at_the_limit_is_accepted(ctx: StepContext, tmp_path: Path) -> None:
    spec = write_job(tmp_path, "at-limit", 3)
    spec.write_text(spec.read_text().replace("max_tokens = 8", "max_tokens = 64000"))

    assert submit_job(ctx, spec)[1]
    assert rows_in_store(ctx) == (1, 3)


def test_25_bad_rows_list_20_and_count_the_rest_and_nothing_is_written(
    ctx: StepContext, tmp_path: Path
) -> None:
    rows = _rows(ROWS, m="claude-haiku-4-5")
    bad_lines = []
    for n, index in enumerate(range(10, ROWS, 60)):  # 25 rows, spread past the first chunk
        kind = n % 4
        if kind == 0:
            rows[index] = {"id": f"k{index}", "m": "claude-haiku-4-5"}  # no "t" to render
        elif kind == 1:
            rows[index]["m"] = f"claude-foo-{index}"  # unknown model
        elif kind == 2:
            rows[index]["t"] = "x" * 6000  # too big for batching.max_bytes below
        else:
            rows[index] = {"t": "no key", "m": "claude-haiku-4-5"}
        bad_lines.append(index + 1)
    assert len(bad_lines) == 25
    spec = write_job(
        tmp_path, "many-bad", ROWS, rows=rows, options="[batching]\nmax_bytes = 5000\n"
    )
    _model_from_row(spec)

    lines = _refusal(ctx, spec).splitlines()

    data = tmp_path / "rows.jsonl"
    assert lines[0] == f"25 bad rows in {data} (nothing was recorded):"
    listed = lines[1:-1]
    assert len(listed) == MAX_REPORTED_ROWS == 20
    assert [line.split(": ", 1)[0] for line in listed] == [
        f"{data}:{n}" for n in bad_lines[:MAX_REPORTED_ROWS]
    ]
    assert listed[0].endswith("row has no field 't' (used in request.prompt)")
    assert "request.model: unknown model 'claude-foo-70'" in listed[1]
    assert "request is" in listed[2]
    assert "batch limit (batching.max_bytes) is 5,000" in listed[2]
    assert listed[3].endswith("row has no field 'id' (the item key)")
    assert lines[-1] == "... and 5 more bad rows"
    assert rows_in_store(ctx) == (0, 0)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_byte_that_is_not_utf8_on_line_7_names_line_7(
    ctx: StepContext, tmp_path: Path, suffix: str
) -> None:
    spec = write_job(tmp_path, "latin1", 0, rows=[])
    data = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        spec.write_text(spec.read_text().replace("rows.jsonl", "rows.csv"))
        lines = ["id,t\n", *(f"k{i},café {i}\n" for i in range(2, 200))]
    else:
        rows = ({"id": f"k{i}", "t": f"café {i}"} for i in range(1, 200))
        lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]
    body = [line.encode() for line in lines]
    body[6] = body[6].replace("é".encode(), b"\xe9")  # line 7 saved as Latin-1
    data.write_bytes(b"".join(body))

    message = _refusal(ctx, spec)

    column = lines[6].index("é") + 1
    assert message == f"{data}:7: not valid UTF-8 (byte 0xe9 at column {column})"
    assert rows_in_store(ctx) == (0, 0)
