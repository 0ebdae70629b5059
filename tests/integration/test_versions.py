"""A job's own API version and beta flags are what its batches are sent with: a
2023-06-01 job with ``temperature`` runs beside a 2026-10-21 job in one store, and a
job's ``betas`` reach the API as its create's ``anthropic-beta`` header."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from orchestrator.domain.planning import parse_custom_id, request_bytes
from orchestrator.errors import BadRequestError
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import StepContext
from tests.integration.conftest import assert_job_complete, ledger, new_job, run_job

ITEMS = 6


def spec(root: Path, name: str, head: str = "", request: str = "") -> Path:
    (root / "rows.jsonl").write_text(
        "".join(json.dumps({"id": f"k{n}", "t": f"text {n}"}) + "\n" for n in range(ITEMS))
    )
    path = root / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ninput = "rows.jsonl"\nkey = "id"\n{head}\n'
        '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 8\nprompt = "Say {t}"\n'
        f"{request}"
    )
    return path


def versions_by_job(ctx: StepContext, sim: SimulatorServer) -> dict[int, set[str]]:
    """job id -> the anthropic-version of every batch that carried its requests."""
    with ctx.store.engine.connect() as conn:
        job_of_item: dict[int, int] = dict(
            conn.exec_driver_sql("SELECT id, job_id FROM items").all()  # item id -> job id
        )
    seen: dict[int, set[str]] = {}
    for batch in ledger(sim)["batches"]:
        for custom_id in batch["custom_ids"]:
            parts = parse_custom_id(custom_id)
            assert parts is not None
            seen.setdefault(job_of_item[parts.item_id], set()).add(batch["api_version"])
    return seen


def test_jobs_of_both_versions_run_side_by_side(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    old = new_job(ctx, spec(tmp_path, "old", 'api_version = "2023-06-01"', "temperature = 0\n"))
    new = new_job(ctx, spec(tmp_path, "new"))

    for job_id in (old, new):
        run_job(ctx, job_id)
        rows = assert_job_complete(ctx, job_id)
        assert {r["status"] for r in rows} == {"succeeded"}

    assert versions_by_job(ctx, sim) == {old: {"2023-06-01"}, new: {"2026-10-21"}}


def test_the_simulator_refuses_temperature_under_the_new_version(ctx: StepContext) -> None:
    params = orjson.dumps(
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 8,
            "temperature": 0,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    with pytest.raises(BadRequestError, match="temperature"):
        ctx.api.create([request_bytes("x-1-1", params)], api_version="2026-10-21")


def test_a_jobs_betas_are_sent_with_its_create(
    ctx: StepContext, sim: SimulatorServer, tmp_path: Path
) -> None:
    job_id = new_job(ctx, spec(tmp_path, "beta", 'betas = ["files-api-2025-04-14", "x-1"]'))
    assert ctx.store.get_job(job_id).betas == ("files-api-2025-04-14", "x-1")

    run_job(ctx, job_id)

    assert_job_complete(ctx, job_id)
    assert [b["betas"] for b in ledger(sim)["batches"]] == [["files-api-2025-04-14", "x-1"]]
