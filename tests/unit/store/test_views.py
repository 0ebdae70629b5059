"""Per-job views (store.views): typed answer columns beside the input row's columns, on
SQLite and PostgreSQL, named by the documented rule and remade by ``db upgrade``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson
from sqlalchemy import text

from orchestrator.domain.output import Output, OutputMode
from orchestrator.domain.states import ItemStatus, ResultType
from orchestrator.store.engine import upgrade
from orchestrator.store.queries import Store
from tests.unit.store.helpers import Draft, created_batch, draft, end_batch, make_job, resolve

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string"},
        "score": {"type": "number"},
        "count": {"type": "integer"},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}
OUTPUT = Output(SCHEMA, OutputMode.JSON_SCHEMA)
ANSWER = {"label": "yes", "score": 0.25, "count": 3, "flag": True, "tags": ["a", "b"]}


def with_row(n: int, row: dict[str, Any]) -> Draft:
    return dataclasses.replace(draft(n), input_json=orjson.dumps(row), columns=tuple(row))


def view_rows(store: Store, view: str) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(text(f'SELECT * FROM "{view}" ORDER BY key'))
        return [dict(r._mapping) for r in rows]


def answered_job(store: Store, name: str = "Labels-v2.x") -> int:
    rows = [with_row(0, {"id": "a", "label": "in-a", "note": "x"}), with_row(1, {"id": "b"})]
    job = make_job(store, name=name, items=rows, output=OUTPUT)
    ended = end_batch(
        store, created_batch(store, job.id), [ResultType.SUCCEEDED, ResultType.SUCCEEDED]
    )
    first, second = ended.refs
    with store.engine.begin() as conn:  # the ingest step's answer columns, as it writes them
        conn.execute(
            text("UPDATE results SET output = :o WHERE id = :id"),
            {"o": json.dumps(ANSWER), "id": first.result_id},
        )
        conn.execute(
            text("UPDATE results SET output_error = 'label: missing' WHERE id = :id"),
            {"id": second.result_id},
        )
    resolve(store, ended, [ItemStatus.SUCCEEDED, ItemStatus.FAILED])
    return job.id


def test_the_view_has_typed_answers_and_the_input_columns(store: Store) -> None:
    job_id = answered_job(store)
    job = store.get_job(job_id)
    assert job.view_name == "job_labels_v2_x"
    assert job.input_columns == ("id", "label", "note")

    rows = view_rows(store, "job_labels_v2_x")

    assert [r["key"] for r in rows] == ["k0", "k1"]
    names = list(rows[0])
    assert names[:5] == ["job_name", "key", "custom_id", "attempts", "status"]
    assert names[5:13] == ["label", "score", "count", "flag", "tags", "id", "input_label", "note"]
    got = rows[0]
    assert (got["label"], got["score"], got["count"]) == ("yes", 0.25, 3)
    assert isinstance(got["score"], float)
    assert isinstance(got["count"], int)
    assert got["flag"] in (True, 1)
    tags = got["tags"]
    assert (json.loads(tags) if isinstance(tags, str) else tags) == ["a", "b"]
    assert (got["id"], got["input_label"], got["note"], got["status"]) == (
        "a",
        "in-a",
        "x",
        "succeeded",
    )
    invalid = rows[1]
    assert invalid["label"] is None
    assert invalid["output_error"] == "label: missing"
    assert (invalid["input_label"], invalid["note"]) == (None, None)


def test_a_taken_view_name_gets_the_job_id(store: Store) -> None:
    first = make_job(store, name="a-b")
    second = make_job(store, name="A_B")
    assert (first.view_name, second.view_name) == ("job_a_b", f"job_a_b_{second.id}")
    assert view_rows(store, f"job_a_b_{second.id}")[0]["job_name"] == "A_B"


def test_db_upgrade_remakes_every_view(store: Store) -> None:
    answered_job(store)
    with store.engine.begin() as conn:
        conn.execute(text('DROP VIEW "job_labels_v2_x"'))

    upgrade(store.engine)

    assert [r["label"] for r in view_rows(store, "job_labels_v2_x")] == ["yes", None]
