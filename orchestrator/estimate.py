"""What a job will cost, before anything is sent: ``orchestrator estimate`` / ``run --dry-run``.

The whole spec is read and validated (every bad row reported, as ``submit`` does),
the batches are planned as the planner will plan them, and the input tokens are
counted with the API's count-tokens endpoint (free; model, messages, system, tools,
tool_choice and thinking, as the SDKs send them):

* every request when the job has at most ``sample`` items (exact);
* otherwise a seeded random sample of ``sample`` requests, extrapolated with a ratio
  estimator over the requests' byte-based approximation (which every request has),
  and shown with its 95 % margin;
* with no API key (offline), or when the endpoint can't be reached, the byte
  approximation alone (1 token per 4 bytes of params JSON), and the result says why.

The cost range is at batch prices: the low end pays the input alone, the high end the
input (at its upper margin) plus every answer at ``max_tokens`` (and the highest
data-residency multiplier). A budget (``budget_usd``) is checked against the high end.
"""

from __future__ import annotations

import math
import random
import threading
from array import array
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from orchestrator.domain.planning import (
    BatchPlanner,
    RequestTooLargeForBatch,
    make_custom_id,
    request_size,
)
from orchestrator.domain.pricing import (
    ModelPrice,
    PriceTable,
    approx_input_tokens,
    estimate_cost_usd,
)
from orchestrator.domain.spec import BadRows, ItemDraft, LoadedSpec, display_path, iter_items
from orchestrator.errors import OrchestratorError, SpecError

#: Requests counted with the endpoint when the job is larger than this.
DEFAULT_SAMPLE = 200
#: Count-tokens requests in flight at a time.
COUNT_WORKERS = 8
#: Distinct (model, tokens, max_tokens) costs kept while pricing a job's items.
COSTS_KEPT = 4096
#: The widest custom_id a request may get (sizes the planner conservatively).
_WIDEST_ID = make_custom_id("z" * 16, 10**15, 99)
#: Bytes of a request line besides its params, with that custom_id.
_WIDEST_FRAME = request_size(_WIDEST_ID, 0)
#: z for a 95 % two-sided interval.
_Z95 = 1.96

CountTokens = Callable[[Mapping[str, Any]], int]


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """A job's size and cost range, before anything is sent."""

    items: int
    batches: int
    #: Input tokens of the whole job (counted, or extrapolated from ``counted`` requests).
    input_tokens: int
    #: The 95 % margin of ``input_tokens`` (0 when every request was counted).
    input_margin: int
    counted: int
    #: "count_tokens" or "bytes" (offline).
    method: str
    #: Every answer at its max_tokens.
    output_ceiling: int
    usd_low: float
    usd_high: float
    #: Items whose model has no price in the table (not in the cost range).
    unpriced_items: int
    #: Why the tokens were approximated from bytes (method "bytes").
    approximated_because: str | None = None

    @property
    def exact(self) -> bool:
        return self.method == "count_tokens" and self.counted == self.items


def estimate(
    loaded: LoadedSpec,
    *,
    prices: PriceTable,
    api_version: str,
    count_tokens: CountTokens | None,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
) -> CostEstimate:
    """Read, validate and plan the whole spec and estimate its cost (see the module)."""
    spec = loaded.spec
    bad_rows = BadRows(display_path(spec.data_path), note="nothing was sent")
    tally = EstimateTally(loaded, sample=sample, seed=seed)
    items = iter_items(loaded, default_api_version=api_version, models=prices, bad_rows=bad_rows)
    for item in items:
        tally.add(item, bad_rows)
    bad_rows.raise_if_any()
    return tally.finish(prices=prices, count_tokens=count_tokens)


class EstimateTally:
    """What the estimate needs of a job's items, gathered in one pass over them: by
    :func:`estimate`, or by ``run`` while it records a new job (one read of the data).

    Per item it keeps three integers (approximate input tokens, max_tokens, model),
    plus a seeded reservoir of ``sample`` requests to count, so memory stays flat
    in the number of rows.
    """

    def __init__(
        self,
        loaded: LoadedSpec,
        *,
        sample: int = DEFAULT_SAMPLE,
        seed: int = 0,
        count_ahead: CountTokens | None = None,
    ) -> None:
        batching = loaded.spec.batching
        #: What ``sampled`` counts the sample with, before ``finish`` asks for it.
        self._count_ahead = count_ahead
        self._counts: Future[list[int]] | None = None
        self._stop = threading.Event()
        self._where = display_path(loaded.spec.data_path)
        self._planner = BatchPlanner(batching.max_requests, batching.max_bytes)
        self._approx, self._ceilings, self._models = array("q"), array("q"), array("i")
        self._names: dict[str, int] = {}
        self._picked: list[tuple[int, dict[str, Any]]] = []  # reservoir: (item index, params)
        self._sample = sample
        self._rng = random.Random(seed)
        self._batches = 0

    @property
    def items(self) -> int:
        return len(self._approx)

    def add(self, item: ItemDraft, bad_rows: BadRows) -> bool:
        """Count one item; a request too large for any batch goes to ``bad_rows``
        instead (False)."""
        n = len(self._approx)
        size = _WIDEST_FRAME + len(item.params_json)
        try:
            closed = self._planner.add(n, size)
        except RequestTooLargeForBatch as exc:
            bad_rows.add(SpecError(str(exc), location=f"{self._where}:{item.line}"))
            return False
        self._batches += closed is not None
        self._approx.append(approx_input_tokens(item.params_json))
        self._ceilings.append(int(item.params.get("max_tokens", 0)))
        model = str(item.params.get("model", ""))
        self._models.append(self._names.setdefault(model, len(self._names)))
        if len(self._picked) < self._sample:
            self._picked.append((n, item.params))
        elif (slot := self._rng.randrange(n + 1)) < self._sample:
            self._picked[slot] = (n, item.params)
        return True

    def sampled(self) -> None:
        """Every item is added (``run``'s reader thread says so once it has read the
        last row): with ``count_ahead``, the sample is counted from now on, on threads of
        its own, while the caller stores its last rows and commits; ``finish`` takes the
        counts (with the same ``count_tokens``). Up to half a second of a 100,000-row
        job's recording is left when its last row is read: the counts arrive meanwhile
        instead of after it. ``cancel`` stops the counting."""
        if self._count_ahead is None or not self._picked or self._counts is not None:
            return
        requests = [params for _, params in self._picked]
        count, stop = self._count_ahead, self._stop

        def count_unless_stopped(params: Mapping[str, Any]) -> int:
            if stop.is_set():
                raise _Canceled("the job was not recorded")
            return count(params)

        pool = ThreadPoolExecutor(1, "count-ahead")
        self._counts = pool.submit(_counted, requests, count_unless_stopped)
        pool.shutdown(wait=False)

    def cancel(self) -> None:
        """The job is not recorded after all: no count not yet started is sent."""
        self._stop.set()

    def finish(self, *, prices: PriceTable, count_tokens: CountTokens | None) -> CostEstimate:
        """The estimate of every item added: the sample counted with ``count_tokens``
        (None: offline, bytes alone) and extrapolated, priced at batch prices."""
        approx, ceilings, models, picked = self._approx, self._ceilings, self._models, self._picked
        batches = self._batches + (1 if self._planner.finish() is not None else 0)
        total = len(approx)
        scale, margin, counted, method = 1.0, 0, 0, "bytes"
        because: str | None = "offline: no ANTHROPIC_API_KEY"
        if count_tokens is not None and picked:
            try:
                if self._counts is not None and count_tokens is self._count_ahead:
                    found = self._counts.result()  # counted since ``sampled``
                else:
                    found = _counted([params for _, params in picked], count_tokens)
                counts = [(approx[n], c) for (n, _), c in zip(picked, found, strict=True)]
            except OrchestratorError as exc:  # unreachable, refused...: an estimate all the same
                because = f"the count-tokens endpoint failed: {exc}"
            else:
                scale, margin = _ratio(counts, total)
                counted, method, because = len(counts), "count_tokens", None
        input_tokens = round(sum(approx) * scale)
        upper = (input_tokens + margin) / input_tokens if input_tokens else 1.0
        low = high = 0.0
        unpriced = 0
        model_prices = [prices.price_for(name) for name in self._names]  # by model index

        # Rows mostly repeat a few (model, tokens, max_tokens): each priced once.
        @lru_cache(maxsize=COSTS_KEPT)
        def cost_of(model: int, tokens: int, ceiling: int) -> tuple[float, float] | None:
            return _costs(model_prices[model], tokens, ceiling, scale, upper)

        for n in range(total):
            cost = cost_of(models[n], approx[n], ceilings[n])
            if cost is None:
                unpriced += 1
                continue
            low += cost[0]
            high += cost[1]
        return CostEstimate(
            items=total,
            batches=batches,
            input_tokens=input_tokens,
            input_margin=margin,
            counted=counted,
            method=method,
            output_ceiling=sum(ceilings),
            usd_low=round(low, 6),
            usd_high=round(high, 6),
            unpriced_items=unpriced,
            approximated_because=because,
        )


def _costs(
    price: ModelPrice | None, approx: int, ceiling: int, scale: float, upper: float
) -> tuple[float, float] | None:
    """One item's (low, high) cost at batch prices; None when its model has no price."""
    if price is None:
        return None
    tokens = round(approx * scale)
    low = estimate_cost_usd(price, tokens, 0)
    return low, estimate_cost_usd(price, math.ceil(tokens * upper), ceiling)


class _Canceled(Exception):
    """Raised in place of a count the tally was told not to make (``cancel``)."""


def _counted(requests: list[dict[str, Any]], count_tokens: CountTokens) -> list[int]:
    """``count_tokens`` of each request, in order, ``COUNT_WORKERS`` of them at a time
    (each is a round trip to the API). What the first request (in order) whose count
    failed raised is raised, as one after the other would; the requests not started
    by then are not sent."""
    if len(requests) < 2:
        return [count_tokens(params) for params in requests]
    pool = ThreadPoolExecutor(min(COUNT_WORKERS, len(requests)), "count-tokens")
    try:
        return list(pool.map(count_tokens, requests))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ratio(counts: list[tuple[int, int]], population: int) -> tuple[float, int]:
    """Ratio estimator of counted / approximated tokens, and the 95 % margin of the
    total it extrapolates to (0 when the sample is the whole population)."""
    sample = len(counts)
    approx_sum = sum(a for a, _ in counts) or 1
    ratio = sum(c for _, c in counts) / approx_sum
    if sample >= population or sample < 2:
        return ratio, 0
    residuals = [c - ratio * a for a, c in counts]
    variance = sum(r * r for r in residuals) / (sample - 1)
    correction = 1 - sample / population
    margin = _Z95 * population * math.sqrt(variance * correction / sample)
    return ratio, math.ceil(margin)


__all__ = ["DEFAULT_SAMPLE", "CostEstimate", "EstimateTally", "estimate"]
