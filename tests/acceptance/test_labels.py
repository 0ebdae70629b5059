"""Labels as data, end to end through the CLI: a CSV with extra columns goes in, typed
answer columns come out in the job's view and in every export, and answers that don't
match the schema are retried, then failed as ``invalid_output``.

The truth is the simulator's own results files, read over HTTP: every answer it gave
is parsed and validated here with ``jsonschema``, independently of the orchestrator.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from jsonschema import Draft202012Validator

from orchestrator.domain.planning import parse_custom_id
from orchestrator.simulator import SimulatorConfig, SimulatorServer
from tests.acceptance.support import SECRET_KEY, cli, sim_env

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "jobs" / "review-labels"
ROWS = 400
MAX_ATTEMPTS = 2
PROPERTIES = ("sentiment", "confidence", "topics", "would_recommend")
#: The CSV's columns: the key, two the prompt uses, one no one uses, and one named
#: like a property (exported as ``input_sentiment``).
INPUT_COLUMNS = ("id", "product", "text", "channel", "sentiment")
#: ... as columns: ``text`` and ``sentiment`` are taken (a result field, a property).
INPUT_EXPORTED = ("id", "product", "input_text", "channel", "input_sentiment")
PARQUET_TYPES = {
    "sentiment": pa.string(),
    "confidence": pa.float64(),
    "topics": pa.string(),  # nested: JSON text
    "would_recommend": pa.bool_(),
    "input_sentiment": pa.string(),
    "product": pa.string(),
    "channel": pa.string(),
    "attempts": pa.int64(),
}


def _job(tmp_path: Path, mode: str) -> Path:
    """The shipped example, cut to ROWS rows, with two more input columns."""
    work = tmp_path / "job"
    work.mkdir()
    shutil.copy(EXAMPLE / "label.schema.json", work)
    with (EXAMPLE / "reviews.csv").open(newline="", encoding="utf-8") as src:
        rows = [r for _, r in zip(range(ROWS), csv.DictReader(src), strict=False)]
    with (work / "reviews.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=INPUT_COLUMNS)
        writer.writeheader()
        for n, row in enumerate(rows):
            writer.writerow({**row, "channel": ("web", "store")[n % 2], "sentiment": f"s{n}"})
    spec = (EXAMPLE / "spec.toml").read_text(encoding="utf-8")
    spec = spec.replace('mode = "json_schema"', f'mode = "{mode}"')
    spec = spec.replace("max_attempts = 3", f"max_attempts = {MAX_ATTEMPTS}")
    assert f'mode = "{mode}"' in spec
    assert f"max_attempts = {MAX_ATTEMPTS}" in spec
    (work / "spec.toml").write_text(spec, encoding="utf-8")
    return work / "spec.toml"


def _served_answers(sim: SimulatorServer, mode: str) -> dict[str, Any]:
    """custom_id -> the answer the simulator gave (a value), or None when invalid."""
    schema = json.loads((EXAMPLE / "label.schema.json").read_text())
    validator = Draft202012Validator(schema)
    headers = {"x-api-key": SECRET_KEY, "anthropic-version": "2023-06-01"}
    answers: dict[str, Any] = {}
    with httpx.Client(base_url=sim.base_url, headers=headers) as http:
        for batch in sim.state.batches():
            got = http.get(f"/v1/messages/batches/{batch.id}/results")
            got.raise_for_status()
            for line in got.text.splitlines():
                result = json.loads(line)
                if result["result"]["type"] != "succeeded":
                    continue
                answers[result["custom_id"]] = _valid(result["result"]["message"], mode, validator)
    return answers


def _valid(message: dict[str, Any], mode: str, validator: Draft202012Validator) -> Any:
    blocks = message["content"]
    if mode == "tool":
        calls = [b for b in blocks if b["type"] == "tool_use"]
        value = calls[0]["input"] if calls else None
    else:
        try:
            value = json.loads("".join(b["text"] for b in blocks if b["type"] == "text"))
        except json.JSONDecodeError:
            return None
    return value if value is not None and validator.is_valid(value) else None


@pytest.mark.parametrize("mode", ["json_schema", "tool"])
@pytest.mark.timeout(300)
def test_answers_land_as_typed_columns_beside_the_input_row(tmp_path: Path, mode: str) -> None:
    spec = _job(tmp_path, mode)
    db = tmp_path / "store.db"
    # Invalid answers are drawn per custom_id, and custom_ids carry the store's random tag,
    # so which items get them differs per run. At a quarter, about 100 items answer off-schema
    # first and about 25 twice; the chance that none does twice (the run would exit 0) is
    # 0.75**100, about 3e-13. At a tenth it was 0.9**40, 1.5%: this test flaked in CI.
    config = SimulatorConfig(seed=3, processing_seconds=0.5, invalid_output_share=0.25)
    with SimulatorServer(config) as sim:
        env = sim_env(sim, db)
        run = cli(env, "run", str(spec), timeout=240)
        assert run.returncode == 3, run.stderr[-3000:]  # done, some items failed
        served = _served_answers(sim, mode)
        status = cli(env, "status", "review-labels")
        exports = {}
        for fmt in ("jsonl", "csv", "parquet"):
            target = tmp_path / f"labels.{fmt}"
            done = cli(env, "export", "review-labels", "--format", fmt, "-o", str(target))
            assert done.returncode == 0, done.stderr
            exports[fmt] = target

    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    view = {r["key"]: dict(r) for r in conn.execute("SELECT * FROM job_review_labels")}
    assert len(view) == ROWS
    columns = list(next(iter(view.values())))
    assert columns[:5] == ["job_name", "key", "custom_id", "attempts", "status"]
    assert columns[5:9] == list(PROPERTIES)
    assert columns[9:14] == list(INPUT_EXPORTED)

    # Rows asking exactly what an earlier row asks are not sent (dedupe): they take that
    # row's outcome, so each is checked against the row sent in its place.
    leaders = dict(
        conn.execute(
            "SELECT i.key, l.key FROM items AS i JOIN items AS l ON l.id = i.leader_id"
        ).fetchall()
    )
    assert leaders, "the dataset repeats some reviews: some rows should follow another"
    invalid_first = retried = failed_invalid = 0
    for key, row in view.items():
        sent = view[leaders.get(key, key)]
        assert row["status"] == sent["status"], key
        item_id = _item_id(conn, sent["key"])
        first = served.get(f"{_tag(sent['custom_id'])}-{item_id}-1", "missing")
        if row["status"] == "succeeded":
            answer = served[sent["custom_id"]]
            assert answer is not None, f"{key}: stored as succeeded, but its answer is invalid"
            assert row["sentiment"] == answer["sentiment"]
            assert row["confidence"] == pytest.approx(answer["confidence"])
            assert json.loads(row["topics"]) == answer["topics"]
            assert row["would_recommend"] == int(answer["would_recommend"])
        if first is None:  # the first answer was invalid: retried
            invalid_first += 1
            assert sent["attempts"] >= 2, key
            retried += 1
        if row["status"] == "failed" and row["error_type"] == "invalid_output":
            failed_invalid += 1
            assert sent["attempts"] == MAX_ATTEMPTS
            assert all(
                served.get(f"{_tag(sent['custom_id'])}-{item_id}-{n}") is None
                for n in range(1, MAX_ATTEMPTS + 1)
            )
            assert row["sentiment"] is None
            assert row["output_error"]
        assert row["input_sentiment"] == f"s{int(key[1:]) - 1}"
    assert invalid_first >= ROWS // 20, "the simulator made too few invalid answers to test"
    assert retried == invalid_first
    assert failed_invalid >= 1, "no item stayed invalid; raise ROWS or the invalid share"
    assert failed_invalid == sum(
        1 for r in view.values() if r["status"] == "failed" and r["error_type"] == "invalid_output"
    )

    # Every off-schema answer the simulator served was paid for, and the summary says so.
    off_schema = sum(1 for answer in served.values() if answer is None)
    assert re.search(rf"answers off-schema\s*│ {off_schema:,} \(paid", status.stdout), status.stdout
    _check_exports(exports, view)


def _check_exports(exports: dict[str, Path], view: dict[str, dict[str, Any]]) -> None:
    wanted = [*PROPERTIES, *INPUT_EXPORTED]
    lines = [json.loads(line) for line in exports["jsonl"].read_text().splitlines()]
    assert [r["key"] for r in lines] == sorted(view, key=lambda k: int(k[1:]))
    for row in lines:
        assert all(name in row for name in wanted)
        assert row["sentiment"] == view[row["key"]]["sentiment"]
        if row["topics"] is not None:
            assert isinstance(row["topics"], list)
    with exports["csv"].open(newline="", encoding="utf-8") as fh:
        header = csv.DictReader(fh).fieldnames or []
    assert all(name in header for name in wanted)
    table = pq.read_table(exports["parquet"])
    for name, kind in PARQUET_TYPES.items():
        assert table.schema.field(name).type == kind, name
    assert table.num_rows == len(view)


def _item_id(conn: sqlite3.Connection, key: str) -> int:
    return int(conn.execute("SELECT id FROM items WHERE key = ?", (key,)).fetchone()[0])


def _tag(custom_id: str | None) -> str:
    parts = parse_custom_id(custom_id or "")
    assert parts is not None
    return parts.store_tag
