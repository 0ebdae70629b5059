"""Recording a job from its spec: validate everything before any spend.

Items stream into the store in one transaction; a bad row is skipped and collected,
and if any row was bad they are all reported (up to a cap) just before the commit,
which rolls everything back: nothing is recorded.

``submit_spec`` is idempotent: the same spec (same name, same content hash over
the spec and its data) resumes the job it made before; a different spec under a
name in use is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, partial
from itertools import chain
from pathlib import Path

from orchestrator.api.jsonl import ReadAhead
from orchestrator.chunking import chunked
from orchestrator.domain.contract import DEFAULT_API_VERSION, ENVELOPE_OVERHEAD
from orchestrator.domain.planning import make_custom_id, request_size
from orchestrator.domain.pricing import PriceTable, approx_input_tokens, estimate_cost_usd
from orchestrator.domain.spec import (
    BadRows,
    ItemDraft,
    LoadedSpec,
    display_path,
    good_items,
    item_rows,
    load_spec,
)
from orchestrator.errors import BudgetExceededError, JobConflictError, JobNotFoundError, SpecError
from orchestrator.estimate import COSTS_KEPT, EstimateTally
from orchestrator.store.jobs import PlanAtRecord
from orchestrator.store.queries import Store
from orchestrator.store.records import JobRecord, NewJob

#: Rows the reader thread hands over at a time, and how many such chunks it reads
#: ahead of the store (so it need not wait while a chunk is stored).
READ_AHEAD_ROWS, READ_AHEAD_CHUNKS = 2000, 2
#: The longest custom_id we can make (item ids up to 10**15, attempts up to 10**4).
_WIDEST_ITEM_ID, _WIDEST_ATTEMPT = 10**15, 10**4


@dataclass
class Estimate:
    """Upper-bound cost of a job: all input, every output at its max_tokens."""

    usd: float = 0.0
    unpriced_models: int = 0


def submit_spec(
    store: Store,
    path: Path,
    now: datetime,
    prices: PriceTable,
    *,
    api_version: str = DEFAULT_API_VERSION,
    name: str | None = None,
) -> tuple[JobRecord, bool]:
    """Record the job of ``path`` (or find it again). Returns (job, created).

    ``name`` overrides the spec's name (the daemon names each cron run apart).
    """
    return submit_loaded(store, load_spec(path), now, prices, api_version=api_version, name=name)


def submit_loaded(
    store: Store,
    loaded: LoadedSpec,
    now: datetime,
    prices: PriceTable,
    *,
    api_version: str = DEFAULT_API_VERSION,
    name: str | None = None,
    tally: EstimateTally | None = None,
    before_commit: Callable[[], None] | None = None,
    plan: PlanAtRecord | None = None,
) -> tuple[JobRecord, bool]:
    """Record the job of a loaded spec (or find it again). Returns (job, created).

    ``tally`` gathers the cost estimate from the same pass over the rows (``run``
    reads a new job's data once); ``before_commit`` runs inside the job's transaction
    once every row is recorded and checked (raising records nothing). With ``plan``, a
    new job's first batch is planned as it is recorded (``run``, which sends at once;
    see ``PlanAtRecord``); the other items wait ``pending`` for the plan step.
    """
    spec = loaded.spec
    job_name = name or spec.name
    existing = store.find_job_by_name(job_name)
    if existing is not None:
        if existing.content_hash != loaded.content_hash:
            raise JobConflictError(
                f"job {job_name!r} (id {existing.id}) already exists with a different spec or "
                f"data: to start a new job, give the spec a new `name` in {loaded.path}"
            )
        return existing, False
    estimate = Estimate()
    bad_rows = BadRows(display_path(spec.data_path), note="nothing was recorded")

    def check_budget(item_count: int) -> None:
        bad_rows.raise_if_any()  # inside the transaction: raising rolls every item back
        if item_count == 0:
            raise SpecError(
                "the job has no items (the input file has no rows)", location=str(loaded.path)
            )
        if before_commit is not None:
            before_commit()
        if spec.budget_usd is not None and estimate.unpriced_models:
            raise BudgetExceededError(
                f"{loaded.path}: budget_usd is set but {estimate.unpriced_models:,} item(s) use "
                "a model with no price in orchestrator/domain/prices.json, so the cost can't be "
                "bounded; add the model's price there or remove budget_usd"
            )
        if spec.budget_usd is not None and estimate.usd > spec.budget_usd:
            raise BudgetExceededError(
                f"{loaded.path}: budget_usd is {spec.budget_usd:.2f} but the pre-flight estimate "
                f"is up to {estimate.usd:.2f} USD (all prompt tokens + every answer at max_tokens, "
                "at batch prices); raise budget_usd or lower max_tokens"
            )

    new = _new_job(loaded, job_name, api_version)
    rows = item_rows(loaded, default_api_version=api_version, models=prices)
    tag = store.store_tag()
    # The rows are read, rendered, validated, checked and tallied on a thread of their
    # own, up to READ_AHEAD_CHUNKS chunks ahead of this one, which stores them in file
    # order: the store's statements let go of the GIL (SQLite's inserts go many rows a
    # statement), so the two overlap, and this thread, the slower one, does nothing
    # else. ``bad_rows``, ``estimate`` and ``tally`` are the reader's until it has
    # handed over its last chunk: only ``check_budget`` reads them here, once every
    # item is stored. What the thread raises is raised here, in its place among the
    # rows; leaving the block, however, stops and joins the thread.
    drafts = good_items(rows, bad_rows)
    checked = _checked_items(loaded, drafts, tag, prices, estimate, bad_rows, tally)
    chunks = chunked(checked, READ_AHEAD_ROWS)
    with ReadAhead(chunks, name="items-reader", ahead=READ_AHEAD_CHUNKS, join=True) as ahead:
        items = chain.from_iterable(ahead.items())
        job = store.create_job(new, items, before_commit=check_budget, now=now, plan=plan)
    return job, True


def _new_job(loaded: LoadedSpec, name: str, api_version: str) -> NewJob:
    spec = loaded.spec
    return NewJob(
        name=name,
        content_hash=loaded.content_hash,
        spec_path=str(loaded.path),
        spec=spec.model_dump(mode="json"),
        max_attempts=spec.retry.max_attempts,
        max_requests=spec.batching.max_requests,
        max_bytes=spec.batching.max_bytes,
        use_cache=spec.cache,
        dedupe=spec.dedupe,
        budget_usd=spec.budget_usd,
        schedule=spec.schedule,
        output=loaded.output,
        betas=tuple(spec.betas),
        api_version=spec.api_version or api_version,
    )


def _checked_items(
    loaded: LoadedSpec,
    drafts: Iterable[ItemDraft],
    tag: str,
    prices: PriceTable,
    estimate: Estimate,
    bad_rows: BadRows,
    tally: EstimateTally | None = None,
) -> Iterator[ItemDraft]:
    """The good items of ``drafts``, summing the estimate; bad rows (a request too big
    for a batch included) go to ``bad_rows``, which the caller raises before committing.
    """
    widest_id = make_custom_id(tag, _WIDEST_ITEM_ID, _WIDEST_ATTEMPT)
    frame = request_size(widest_id, 0) + ENVELOPE_OVERHEAD
    limit = loaded.spec.batching.max_bytes
    # Rows mostly repeat a few (model, input tokens, max_tokens): each priced once.
    cost_of = lru_cache(maxsize=COSTS_KEPT)(partial(_upper_cost, prices))
    for item in drafts:
        size = frame + len(item.params_json)
        if size > limit:
            bad_rows.add(
                SpecError(
                    f"request is {size:,} bytes with its batch envelope; the batch limit "
                    f"(batching.max_bytes) is {limit:,}: shorten this row",
                    location=item_location(loaded, item),
                )
            )
            continue
        if tally is not None and not tally.add(item, bad_rows):
            continue
        params = item.params
        cost = cost_of(
            str(params.get("model", "")),
            approx_input_tokens(item.params_json),
            int(params.get("max_tokens", 0)),
        )
        if cost is None:
            estimate.unpriced_models += 1
        else:
            estimate.usd += cost
        yield item
    if tally is not None and not bad_rows:  # the last row is read: the sample is known
        tally.sampled()


def _upper_cost(prices: PriceTable, model: str, tokens: int, max_tokens: int) -> float | None:
    """A request's upper-bound cost (``estimate_cost_usd``); None when its model has no price."""
    price = prices.price_for(model)
    return None if price is None else estimate_cost_usd(price, tokens, max_tokens)


def item_location(loaded: LoadedSpec, item: ItemDraft) -> str:
    return f"{display_path(loaded.spec.data_path)}:{item.line}"


def resolve_job(store: Store, ref: str) -> JobRecord:
    """The job a user named: by name first, else by id when ``ref`` is all digits.

    A job may be named "2024": its name wins over the job whose id is 2024.
    """
    job = store.find_job_by_name(ref)
    if job is None and ref.isdigit():
        job = store.find_job_by_id(int(ref))
    if job is None:
        raise JobNotFoundError(
            f"no job named {ref!r} in this store; `orchestrator status` lists them"
        )
    return job
