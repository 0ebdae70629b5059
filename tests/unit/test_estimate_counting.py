"""The estimate's count-tokens calls go several at a time, yet the estimate is the one
they give one after the other: same counts, in the same order, and the same fallback
(naming the first request that failed) when the endpoint fails."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator import estimate as estimate_module
from orchestrator.domain.pricing import PriceTable, approx_input_tokens, estimate_cost_usd
from orchestrator.domain.spec import BadRows, LoadedSpec, iter_items, load_spec
from orchestrator.errors import APIConnectionError
from orchestrator.estimate import CostEstimate, EstimateTally

PRICES = PriceTable.load()


def write_job(root: Path, rows: int) -> LoadedSpec:
    with (root / "rows.jsonl").open("w", encoding="utf-8") as out:
        for n in range(rows):
            model = "claude-haiku-4-5" if n % 3 else "claude-sonnet-4-6"
            text = "word " * (1 + n * 37 % 300)
            out.write(json.dumps({"id": f"k{n}", "text": text, "model": model}) + "\n")
    spec = root / "spec.toml"
    spec.write_text(
        'name = "counted"\ninput = "rows.jsonl"\nkey = "id"\n'
        '[request]\nmodel = "{model}"\nmax_tokens = 64\nprompt = "Review: {text}"\n',
        encoding="utf-8",
    )
    return load_spec(spec)


class Counter:
    """A count-tokens endpoint: a slow round trip, a count from the request's text."""

    def __init__(self, delay_s: float = 0.0, fail_on: frozenset[int] = frozenset()) -> None:
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, params: Mapping[str, Any]) -> int:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay_s)
            text = params["messages"][0]["content"]
            length = len(text)
            if length in self.fail_on:
                raise APIConnectionError(f"count-tokens refused the request of {length} chars")
            return 7 + length // 5
        finally:
            with self._lock:
                self.in_flight -= 1


def tallied(loaded: LoadedSpec, sample: int) -> EstimateTally:
    tally = EstimateTally(loaded, sample=sample, seed=3)
    for item in iter_items(loaded, models=PRICES):
        assert tally.add(item, BadRows("rows.jsonl"))
    return tally


def finish(loaded: LoadedSpec, counter: Counter, sample: int = 50) -> CostEstimate:
    return tallied(loaded, sample).finish(prices=PRICES, count_tokens=counter)


def test_concurrent_counts_give_the_estimate_sequential_ones_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = write_job(tmp_path, 400)
    concurrent = Counter(delay_s=0.01)

    found = finish(loaded, concurrent)
    monkeypatch.setattr(estimate_module, "COUNT_WORKERS", 1)
    one_by_one = Counter()
    alone = finish(loaded, one_by_one)

    assert concurrent.most_in_flight > 1
    assert one_by_one.most_in_flight == 1
    assert found == alone
    assert (found.method, found.counted, found.approximated_because) == ("count_tokens", 50, None)


def test_the_first_failure_in_order_is_the_reason_given(tmp_path: Path) -> None:
    loaded = write_job(tmp_path, 400)
    tally = tallied(loaded, 50)
    lengths = [len(params["messages"][0]["content"]) for _, params in tally._picked]
    first, later = lengths[5], lengths[30]
    assert first != later

    found = tally.finish(prices=PRICES, count_tokens=Counter(fail_on=frozenset({first, later})))

    assert found.method == "bytes"
    assert found.counted == 0
    assert found.approximated_because == (
        f"the count-tokens endpoint failed: count-tokens refused the request of {first} chars"
    )


def test_every_item_is_priced_as_before(tmp_path: Path) -> None:
    """The costs worked out once per (model, tokens, max_tokens) sum up, in order, to
    what pricing every item one by one gives."""
    loaded = write_job(tmp_path, 300)
    items = list(iter_items(loaded, models=PRICES))

    found = tallied(loaded, 300).finish(prices=PRICES, count_tokens=Counter())

    counts = [7 + len(i.params["messages"][0]["content"]) // 5 for i in items]
    scale = sum(counts) / sum(approx_input_tokens(i.params_json) for i in items)
    assert found.input_tokens == sum(counts)  # every request counted: exact
    assert found.input_margin == 0
    low = high = 0.0
    for item in items:
        price = PRICES.price_for(item.params["model"])
        assert price is not None
        tokens = round(approx_input_tokens(item.params_json) * scale)
        low += estimate_cost_usd(price, tokens, 0)
        high += estimate_cost_usd(price, math.ceil(tokens), 64)
    assert (found.usd_low, found.usd_high) == (round(low, 6), round(high, 6))


class CallCounter(Counter):
    """A Counter that keeps how many calls it got; with ``gate``, every call first
    waits for it to be set."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.gate = gate
        self._calls_lock = threading.Lock()

    def __call__(self, params: Mapping[str, Any]) -> int:
        with self._calls_lock:
            self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(10)
        return super().__call__(params)


def _tally_ahead(loaded: LoadedSpec, sample: int, counter: CallCounter) -> EstimateTally:
    tally = EstimateTally(loaded, sample=sample, seed=3, count_ahead=counter)
    for item in iter_items(loaded, models=PRICES):
        assert tally.add(item, BadRows("rows.jsonl"))
    return tally


def test_the_sample_is_counted_from_the_moment_the_last_row_is_read(tmp_path: Path) -> None:
    """``run`` counts the sample while it stores its last rows: the counts are made
    before the estimate is asked for, once each, and give the same estimate."""
    loaded = write_job(tmp_path, 300)
    counter = CallCounter()
    tally = _tally_ahead(loaded, 50, counter)
    assert counter.calls == 0  # nothing is counted while rows are still being read
    tally.sampled()
    deadline = time.monotonic() + 10
    while counter.calls < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert counter.calls == 50  # all made, though finish was not called yet

    found = tally.finish(prices=PRICES, count_tokens=counter)

    assert counter.calls == 50  # finish took them: none made twice
    assert found == finish(loaded, Counter())
    assert found.counted == 50


def test_a_canceled_tally_makes_no_count_it_had_not_started(tmp_path: Path) -> None:
    """A job refused or interrupted after its rows were read sends no more counts."""
    loaded = write_job(tmp_path, 300)
    gate = threading.Event()
    counter = CallCounter(gate)
    tally = _tally_ahead(loaded, 200, counter)
    tally.sampled()
    deadline = time.monotonic() + 10
    while counter.calls < estimate_module.COUNT_WORKERS and time.monotonic() < deadline:
        time.sleep(0.01)
    tally.cancel()
    gate.set()
    time.sleep(0.3)  # what was still to start would have started by now
    assert counter.calls == estimate_module.COUNT_WORKERS  # only those already under way


def test_without_a_counter_ahead_the_estimate_counts_when_asked(tmp_path: Path) -> None:
    """No ``count_ahead``: ``sampled`` starts nothing, and ``finish`` counts the sample
    with the counter it is given. Given another counter than the one ahead, it counts
    with that one, as it was asked (``estimate`` and ``run`` pass the same)."""
    loaded = write_job(tmp_path, 300)
    counter = CallCounter()
    tally = tallied(loaded, 50)
    tally.sampled()
    assert tally.finish(prices=PRICES, count_tokens=counter).counted == 50
    assert counter.calls == 50

    ahead, asked = CallCounter(), CallCounter()
    tally = _tally_ahead(loaded, 50, ahead)
    tally.sampled()
    found = tally.finish(prices=PRICES, count_tokens=asked)
    assert asked.calls == 50
    assert found == finish(loaded, Counter())
