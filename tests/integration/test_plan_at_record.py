"""``run`` plans a new job's items as it records them (``PlanAtRecord``): each item is
written once, already in its batch. What it plans must be what the plan step would
have planned from the same rows: the same batches (sizes, requests, order, custom_ids),
the same items queued, the same followers left waiting; and what it can't decide
(params another item of the store has: a cache answer, a repeat) it leaves pending,
for the plan step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from orchestrator.domain.planning import parse_custom_id
from orchestrator.domain.pricing import PriceTable
from orchestrator.domain.spec import load_spec
from orchestrator.errors import BudgetExceededError
from orchestrator.steps.context import utcnow
from orchestrator.steps.jobs import submit_loaded
from orchestrator.steps.plan import plan
from orchestrator.store import jobs as store_jobs
from orchestrator.store.jobs import PlanAtRecord
from orchestrator.store.queries import Store
from tests.conftest import new_postgres_database
from tests.integration.conftest import MakeCtx

PRICES = PriceTable.load()
SPEC = """\
name = "{name}"
input = "{rows}"
key = "id"
dedupe = {dedupe}
cache = {cache}
[request]
model = "claude-haiku-4-5"
max_tokens = 16
prompt = "Review: {{text}}"
[batching]
max_requests = 7
max_bytes = {max_bytes}
"""


def write_spec(
    root: Path,
    texts: list[str],
    *,
    name: str = "job",
    dedupe: bool = True,
    cache: bool = True,
    max_bytes: int = 256_000_000,
) -> Path:
    rows = root / f"{name}.jsonl"
    rows.write_text(
        "".join(json.dumps({"id": f"k{n}", "text": t}) + "\n" for n, t in enumerate(texts)),
        encoding="utf-8",
    )
    spec = root / f"{name}.toml"
    spec.write_text(
        SPEC.format(
            name=name,
            rows=rows.name,
            dedupe=str(dedupe).lower(),
            cache=str(cache).lower(),
            max_bytes=max_bytes,
        ),
        encoding="utf-8",
    )
    return spec


def texts(n: int) -> list[str]:
    """Texts of uneven lengths; rows 5, 9 and 17 repeat earlier ones."""
    found = [f"review {i} " * (1 + i % 5) for i in range(n)]
    for repeat, of in ((5, 1), (9, 1), (17, 4)):
        found[repeat] = found[of]
    return found


def planned_state(store: Store, job_id: int) -> dict[str, Any]:
    """The job's plan, store-neutral: batches by their order, items by their ordinal,
    custom_ids without the store's tag."""

    def untagged(custom_id: str | None) -> tuple[int, int] | None:
        parts = None if custom_id is None else parse_custom_id(custom_id)
        return None if parts is None else (parts.item_id, parts.attempt)

    with store.engine.connect() as conn:
        batches = conn.execute(
            text(
                "SELECT id, status, request_count, body_bytes FROM batches "
                "WHERE job_id = :j ORDER BY id"
            ),
            {"j": job_id},
        ).all()
        order = {row[0]: n for n, row in enumerate(batches)}
        requests = conn.execute(
            text(
                "SELECT r.batch_id, i.ordinal, r.attempt, r.custom_id FROM batch_requests r "
                "JOIN items i ON i.id = r.item_id WHERE i.job_id = :j ORDER BY r.id"
            ),
            {"j": job_id},
        ).all()
        items = conn.execute(
            text(
                "SELECT i.ordinal, i.status, i.attempts, i.batch_id, i.custom_id, l.ordinal "
                "FROM items i LEFT JOIN items l ON l.id = i.leader_id "
                "WHERE i.job_id = :j ORDER BY i.ordinal"
            ),
            {"j": job_id},
        ).all()
    return {
        "batches": [(str(b[1]), b[2], b[3]) for b in batches],
        "requests": [(order[r[0]], r[1], r[2], untagged(r[3])) for r in requests],
        "items": [
            (i[0], str(i[1]), i[2], None if i[3] is None else order[i[3]], untagged(i[4]), i[5])
            for i in items
        ],
    }


def ids_in_file_order(store: Store, job_id: int) -> bool:
    """The job's items are numbered in the order of their rows, planned or not (the
    recorder chooses the ids of the items it plans itself)."""
    with store.engine.connect() as conn:
        ordinals = list(
            conn.execute(
                text("SELECT ordinal FROM items WHERE job_id = :j ORDER BY id"), {"j": job_id}
            ).scalars()
        )
    return ordinals == list(range(len(ordinals)))


def another_store_url(request: pytest.FixtureRequest, store_url: str, tmp_path: Path) -> str:
    """A second fresh store on the same backend as ``store_url``."""
    if store_url.startswith("sqlite"):
        path = tmp_path / "other.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return new_postgres_database(
        request.getfixturevalue("postgres_server"), request.getfixturevalue("postgres_template")
    )


@pytest.mark.parametrize("batches", [1, 3, 100], ids=["first-batch", "three", "all"])
@pytest.mark.parametrize("max_bytes", [256_000_000, 700], ids=["by-count", "by-size"])
def test_the_plan_made_while_recording_is_the_plan_steps(
    ctx_factory: MakeCtx,
    store_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    max_bytes: int,
    batches: int,
) -> None:
    """The first ``batches`` batches are planned while recording, the rest by the plan
    step (it plans them while those are created): together, the plan step's plan."""
    monkeypatch.setattr(store_jobs, "ITEM_CHUNK_ROWS", 4)  # batches close across chunks
    loaded = load_spec(write_spec(tmp_path, texts(40), max_bytes=max_bytes))
    states = []
    recorded: list[int] = []
    for url, planned_at_record in (
        (store_url, True),
        (another_store_url(request, store_url, tmp_path), False),
    ):
        with ctx_factory(url) as ctx:
            planning = PlanAtRecord(ctx.store.store_tag(), batches) if planned_at_record else None
            job, created = submit_loaded(ctx.store, loaded, utcnow(), PRICES, plan=planning)
            assert created
            assert ids_in_file_order(ctx.store, job.id)
            if planning is not None:
                recorded = [b[1] for b in planned_state(ctx.store, job.id)["batches"]]
                assert [n for _, n in planning.planned] == recorded
            plan(ctx, utcnow())  # what the plan step still finds
            states.append(planned_state(ctx.store, job.id))

    at_record, by_step = states
    assert at_record == by_step
    assert len(by_step["batches"]) > 3
    assert len(recorded) == min(batches, len(by_step["batches"]))
    assert at_record["items"][9][1:] == ("pending", 0, None, None, 1)  # follows row 1


def test_params_another_job_has_are_left_to_the_plan_step(
    make_ctx: MakeCtx, tmp_path: Path
) -> None:
    first = load_spec(write_spec(tmp_path, ["shared a", "shared b", "only first"], name="one"))
    second = load_spec(write_spec(tmp_path, ["new 0", "shared a", "new 2", "shared b"], name="two"))
    with make_ctx() as ctx:
        submit_loaded(ctx.store, first, utcnow(), PRICES)  # recorded, not planned
        planning = PlanAtRecord(ctx.store.store_tag())
        job, _ = submit_loaded(ctx.store, second, utcnow(), PRICES, plan=planning)

        recorded = planned_state(ctx.store, job.id)
        assert [i[1] for i in recorded["items"]] == ["queued", "pending", "queued", "pending"]
        assert recorded["batches"] == [("planned", 2, recorded["batches"][0][2])]
        assert planning.planned[0][1] == 2

        plan(ctx, utcnow())  # the first job has no answers: they are sent, in a batch of their own
        planned = planned_state(ctx.store, job.id)
        assert [i[1] for i in planned["items"]] == ["queued"] * 4
        assert [b[1] for b in planned["batches"]] == [2, 2]
        assert [r[1] for r in planned["requests"]] == [0, 2, 1, 3]


def test_without_dedupe_and_cache_repeats_are_planned_at_once(
    make_ctx: MakeCtx, tmp_path: Path
) -> None:
    loaded = load_spec(write_spec(tmp_path, ["same"] * 3 + ["other"], dedupe=False, cache=False))
    with make_ctx() as ctx:
        planning = PlanAtRecord(ctx.store.store_tag())
        job, _ = submit_loaded(ctx.store, loaded, utcnow(), PRICES, plan=planning)

        state = planned_state(ctx.store, job.id)
    assert [i[1:4] for i in state["items"]] == [("queued", 1, 0)] * 4
    assert [n for _, n in planning.planned] == [4]


def test_a_refused_job_leaves_no_batch(make_ctx: MakeCtx, tmp_path: Path) -> None:
    loaded = load_spec(write_spec(tmp_path, texts(20)))

    def refuse() -> None:
        raise BudgetExceededError("over budget (test)")

    with make_ctx() as ctx:
        planning = PlanAtRecord(ctx.store.store_tag())
        with pytest.raises(BudgetExceededError):
            submit_loaded(ctx.store, loaded, utcnow(), PRICES, plan=planning, before_commit=refuse)
        with ctx.store.engine.connect() as conn:
            for table in ("jobs", "items", "batches", "batch_requests"):
                assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
