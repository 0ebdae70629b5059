"""Recording a job from its spec: validate everything before any spend.

Items stream into the store in one transaction; a bad row is skipped and collected,
and if any row was bad they are all reported (up to a cap) just before the commit,
which rolls everything back: nothing is recorded.

``submit_spec`` is idempotent: the same spec (same name, same content hash over
the spec and its data) resumes the job it made before; a different spec under a
name in use is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestrator.domain.contract import DEFAULT_API_VERSION, ENVELOPE_OVERHEAD
from orchestrator.domain.planning import make_custom_id, request_bytes
from orchestrator.domain.pricing import PriceTable, approx_input_tokens, estimate_cost_usd
from orchestrator.domain.spec import (
    BadRows,
    ItemDraft,
    LoadedSpec,
    display_path,
    iter_items,
    load_spec,
)
from orchestrator.errors import BudgetExceededError, JobConflictError, JobNotFoundError, SpecError
from orchestrator.estimate import EstimateTally
from orchestrator.store.queries import Store
from orchestrator.store.records import JobRecord, NewJob

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
) -> tuple[JobRecord, bool]:
    """Record the job of a loaded spec (or find it again). Returns (job, created).

    ``tally`` gathers the cost estimate from the same pass over the rows (``run``
    reads a new job's data once); ``before_commit`` runs inside the job's transaction
    once every row is recorded and checked (raising records nothing).
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
    items = _checked_items(
        loaded, store.store_tag(), prices, estimate, api_version, bad_rows, tally
    )

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
    job = store.create_job(new, items, before_commit=check_budget, now=now)
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
    tag: str,
    prices: PriceTable,
    estimate: Estimate,
    api_version: str,
    bad_rows: BadRows,
    tally: EstimateTally | None = None,
) -> Iterator[ItemDraft]:
    """The good items, summing the estimate; bad rows (a request too big for a batch
    included) go to ``bad_rows``, which the caller raises before committing.
    """
    widest_id = make_custom_id(tag, _WIDEST_ITEM_ID, _WIDEST_ATTEMPT)
    limit = loaded.spec.batching.max_bytes
    checked = iter_items(loaded, default_api_version=api_version, models=prices, bad_rows=bad_rows)
    for item in checked:
        size = len(request_bytes(widest_id, item.params_json)) + ENVELOPE_OVERHEAD
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
        _add_estimate(estimate, item, prices)
        yield item


def _add_estimate(estimate: Estimate, item: ItemDraft, prices: PriceTable) -> None:
    price = prices.price_for(str(item.params.get("model", "")))
    if price is None:
        estimate.unpriced_models += 1
        return
    max_tokens = int(item.params.get("max_tokens", 0))
    estimate.usd += estimate_cost_usd(price, approx_input_tokens(item.params_json), max_tokens)


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
