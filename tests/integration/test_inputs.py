"""Inputs users have, end to end against the simulator: a Parquet file and a SQL query give
the same job as the equivalent CSV (same keys, same params sent, same answers), and an
image column of file paths is sent as base64 image blocks.
"""

from __future__ import annotations

import base64
import csv
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, create_engine, insert, select
from sqlalchemy.pool import NullPool

from orchestrator.simulator import SimulatorServer
from orchestrator.steps import StepContext
from orchestrator.store.tables import Item
from tests.integration.conftest import (
    assert_job_complete,
    assert_no_double_spend,
    new_job,
    run_job,
)

ROWS = [
    {"id": f"r{n:02d}", "text": f"review {n}, with a comma", "stars": n % 5 + 1, "mt": 8 + n % 3}
    for n in range(24)
]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(40, 90))


def write_spec(root: Path, name: str, source: str, extra: str = "") -> Path:
    """A template spec whose max_tokens comes from the row (typed: "8" -> 8 from CSV)."""
    spec = root / f"{name}.toml"
    spec.write_text(
        f'name = "{name}"\ninput = "{source}"\nkey = "id"\ncache = false\n{extra}'
        '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = "{mt}"\n'
        'prompt = "Label this review ({stars} stars): {text}"\n'
    )
    return spec


def write_csv(path: Path) -> None:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)


def sent_params(ctx: StepContext, job_id: int) -> dict[str, dict[str, Any]]:
    """Each item's params as stored: canonical JSON, exactly the bytes sent."""
    with ctx.store.engine.connect() as conn:
        rows = conn.execute(select(Item.key, Item.params).where(Item.job_id == job_id)).all()
    return {key: orjson.loads(params) for key, params in rows}


def answers(ctx: StepContext, sim: SimulatorServer, job_id: int) -> dict[str, object]:
    run_job(ctx, job_id)
    rows = assert_job_complete(ctx, job_id)
    assert_no_double_spend(ctx, sim, job_id)
    assert {row["status"] for row in rows} == {"succeeded"}
    return {row["key"]: row["text"] for row in rows}


def run_same_as_csv(ctx: StepContext, sim: SimulatorServer, root: Path, other: Path) -> None:
    write_csv(root / "rows.csv")
    csv_job = new_job(ctx, write_spec(root, "from-csv", "rows.csv"))
    other_job = new_job(ctx, other)

    csv_answers = answers(ctx, sim, csv_job)
    assert answers(ctx, sim, other_job) == csv_answers
    assert sorted(csv_answers) == [row["id"] for row in ROWS]
    expected = sent_params(ctx, csv_job)
    assert sent_params(ctx, other_job) == expected
    assert expected["r01"]["max_tokens"] == 9  # "9" in the CSV, 9 in the Parquet / SQL row


def test_parquet_input_gives_the_same_job_as_csv(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "rows.parquet", row_group_size=10)
    parquet_spec = write_spec(tmp_path, "from-parquet", "rows.parquet")
    run_same_as_csv(ctx, sim, tmp_path, parquet_spec)


def test_sql_input_gives_the_same_job_as_csv(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    with sqlite3.connect(tmp_path / "reviews.db") as db:
        db.execute("CREATE TABLE reviews (id TEXT, text TEXT, stars INTEGER, mt INTEGER)")
        rows = [tuple(row.values()) for row in reversed(ROWS)]  # stored out of order
        db.executemany("INSERT INTO reviews VALUES (?, ?, ?, ?)", rows)
    query = "sql:SELECT id, text, stars, mt FROM reviews ORDER BY id"
    sql_spec = write_spec(tmp_path, "from-sql", query, 'input_url = "sqlite:///reviews.db"\n')
    run_same_as_csv(ctx, sim, tmp_path, sql_spec)


def test_sql_input_with_its_url_from_the_environment_on_each_backend(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's own database (SQLite or PostgreSQL) holds the input table: the query
    streams through that backend's cursor, the URL comes from the environment."""
    url = ctx.settings.database_url
    engine = create_engine(url, poolclass=NullPool)
    reviews = Table(
        "input_reviews",
        MetaData(),
        Column("id", Text),
        Column("text", Text),
        Column("stars", Integer),
        Column("mt", Integer),
    )
    with engine.begin() as conn:
        reviews.create(conn)
        conn.execute(insert(reviews), list(reversed(ROWS)))
    engine.dispose()
    monkeypatch.setenv("INPUT_DB_URL", url)
    query = "sql:SELECT id, text, stars, mt FROM input_reviews ORDER BY id"
    sql_spec = write_spec(tmp_path, "from-env-url", query, 'input_url = "${INPUT_DB_URL}"\n')
    run_same_as_csv(ctx, sim, tmp_path, sql_spec)


def test_image_paths_are_sent_as_base64_images(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "cat.png").write_bytes(PNG)
    (tmp_path / "img" / "dog.jpg").write_bytes(JPEG)
    files = {"img/cat.png": (PNG, "image/png"), "img/dog.jpg": (JPEG, "image/jpeg")}
    names = sorted(files)
    (tmp_path / "pets.csv").write_text(
        "id,image\n" + "".join(f"p{n},{names[n % 2]}\n" for n in range(6))
    )
    spec = tmp_path / "pets.toml"
    spec.write_text(
        'name = "pets"\ninput = "pets.csv"\nkey = "id"\n'
        '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 16\n'
        '[[request.messages]]\nrole = "user"\ncontent = [\n'
        '  { type = "image", path = "{image}" },\n'
        '  { type = "text", text = "Which animal is this?" },\n]\n'
    )
    job_id = new_job(ctx, spec)

    answers(ctx, sim, job_id)

    params = sent_params(ctx, job_id)
    assert sorted(params) == [f"p{n}" for n in range(6)]
    for n in range(6):
        data, media_type = files[names[n % 2]]
        image = params[f"p{n}"]["messages"][0]["content"][0]
        assert image == {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": media_type,
                "data": base64.b64encode(data).decode(),
            },
        }
