"""Costs at batch prices, checked against hand-computed figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.domain.pricing import (
    ModelPrice,
    PriceTable,
    UsageCounts,
    approx_input_tokens,
    cost_usd,
    estimate_cost_usd,
)
from orchestrator.errors import ConfigError

M = 1_000_000


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def price(table: PriceTable, model: str) -> ModelPrice:
    found = table.price_for(model)
    assert found is not None, model
    return found


def test_haiku_4_5_million_in_and_out_costs_three_dollars(table: PriceTable) -> None:
    # (1 + 5) USD/MTok standard, half price in a batch.
    assert cost_usd(UsageCounts(M, M), price(table, "claude-haiku-4-5")) == 3.0


def test_cache_writes_and_reads(table: PriceTable) -> None:
    usage = UsageCounts(
        input_tokens=1000,
        output_tokens=500,
        cache_creation_input_tokens=30_000,
        cache_read_input_tokens=100_000,
        cache_5m_tokens=10_000,
        cache_1h_tokens=20_000,
    )
    # sonnet-4-6: 1000*3 + 10k*3.75 + 20k*6 + 100k*0.3 + 500*15 = 198,000 -> /1e6 * 0.5
    assert cost_usd(usage, price(table, "claude-sonnet-4-6")) == pytest.approx(0.099, abs=1e-12)


def test_without_the_split_every_cache_write_is_5_minutes(table: PriceTable) -> None:
    usage = UsageCounts(0, 0, cache_creation_input_tokens=M)
    assert cost_usd(usage, price(table, "claude-haiku-4-5")) == 0.625  # 1.25 * 0.5


def test_us_inference_geo_costs_10_percent_more_on_4_6_and_later(table: PriceTable) -> None:
    usage = UsageCounts(M, M, inference_geo="us")
    assert cost_usd(usage, price(table, "claude-opus-4-6")) == pytest.approx(16.5)  # 30*.5*1.1
    assert (
        cost_usd(UsageCounts(M, M, inference_geo="global"), price(table, "claude-opus-4-6")) == 15.0
    )
    assert cost_usd(usage, price(table, "claude-haiku-4-5")) == 3.0  # before 4.6: no multiplier


def test_costs_are_rounded_to_a_billionth(table: PriceTable) -> None:
    cost = cost_usd(UsageCounts(7, 3), price(table, "claude-haiku-4-5"))
    assert cost == 0.000011  # (7*1 + 3*5) * 0.5 / 1e6
    assert cost == round(cost, 9)


def test_tiered_model_switches_rates_above_the_threshold(table: PriceTable) -> None:
    haiku = price(table, "claude-haiku-5-5")
    assert cost_usd(UsageCounts(100_000, 0), haiku) == pytest.approx(0.005)  # 0.1/MTok
    assert cost_usd(UsageCounts(100_001, 0), haiku) == pytest.approx(100_001 * 0.5 * 0.5 / M)


@pytest.mark.parametrize(
    ("model", "listed"),
    [
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("claude-fable-5-1", "claude-fable-5-1"),
        ("claude-fable-5", "claude-fable-5"),
    ],
)
def test_dated_variants_match_the_longest_listed_id(
    table: PriceTable, model: str, listed: str
) -> None:
    assert price(table, model).model == listed


@pytest.mark.parametrize("model", ["gpt-4o", "claude-opus-4-9", "claude-haiku-4-5x", ""])
def test_unknown_models_have_no_price(table: PriceTable, model: str) -> None:
    assert table.price_for(model) is None


def test_every_model_id_in_the_research_note_is_priced(table: PriceTable) -> None:
    ids = (
        "claude-fable-5-2 claude-mythos-5-2 claude-haiku-5-5 claude-sonnet-5-5 claude-opus-5-5 "
        "claude-fable-5-1 claude-mythos-5-1 claude-sonnet-5 claude-fable-5 claude-mythos-5 "
        "claude-opus-5 claude-opus-4-8 claude-opus-4-7 claude-opus-4-6 claude-sonnet-4-6 "
        "claude-haiku-4-5 claude-opus-4-5 claude-sonnet-4-5 claude-opus-4-1 claude-opus-4"
    )
    assert [m for m in ids.split() if table.price_for(m) is None] == []


def test_the_table_is_dated(table: PriceTable) -> None:
    assert table.as_of == "2026-08-22"
    assert price(table, "claude-haiku-4-5").as_of == "2026-08-22"
    assert price(table, "claude-haiku-4-5").batch_discount == 0.5


def test_estimate_is_an_upper_bound_with_all_output_at_max_tokens(table: PriceTable) -> None:
    haiku = price(table, "claude-haiku-4-5")
    assert estimate_cost_usd(haiku, M, M) == 3.0
    assert estimate_cost_usd(haiku, 1000, 16) >= cost_usd(UsageCounts(1000, 3), haiku)
    assert estimate_cost_usd(price(table, "claude-opus-4-6"), M, 0) == pytest.approx(2.75)


@pytest.mark.parametrize(("size", "tokens"), [(0, 0), (1, 1), (4, 1), (5, 2), (4000, 1000)])
def test_approx_input_tokens_is_a_quarter_of_the_bytes_rounded_up(size: int, tokens: int) -> None:
    assert approx_input_tokens(b"x" * size) == tokens


def test_a_malformed_price_table_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"as_of": "x", "batch_discount": 0.5, "prices": [{"models": []}]}))
    with pytest.raises(ConfigError, match="is malformed"):
        PriceTable.load(path)
