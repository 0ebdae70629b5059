"""Costs at batch prices, checked against hand-computed figures."""

from __future__ import annotations

import json
from datetime import date
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
    assert table.as_of == date(2026, 11, 22)
    assert "§9" in table.source
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


# --- the model table: limits on the same rows -----------------------------------------------


@pytest.mark.parametrize(
    ("model", "listed", "max_output_tokens", "supports_thinking"),
    [
        ("claude-fable-5-2", "claude-fable-5-2", 128_000, True),
        ("claude-mythos-5-1", "claude-mythos-5-1", 128_000, True),
        ("claude-fable-5", "claude-fable-5", 128_000, True),
        ("claude-opus-5-5", "claude-opus-5-5", 128_000, True),
        ("claude-opus-5", "claude-opus-5", 128_000, True),
        ("claude-opus-4-7", "claude-opus-4-7", 128_000, True),
        ("claude-opus-4-6", "claude-opus-4-6", 128_000, True),
        ("claude-opus-4-5-20251101", "claude-opus-4-5", 64_000, True),
        ("claude-opus-4-1-20250805", "claude-opus-4-1", 32_000, True),
        ("claude-opus-4-20250514", "claude-opus-4", 32_000, True),
        ("claude-sonnet-5-5", "claude-sonnet-5-5", 128_000, True),
        ("claude-sonnet-5", "claude-sonnet-5", 128_000, True),
        ("claude-sonnet-4-6", "claude-sonnet-4-6", 128_000, True),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5", 64_000, True),
        ("claude-sonnet-4-0", "claude-sonnet-4-0", 64_000, True),
        ("claude-haiku-5-5", "claude-haiku-5-5", 128_000, True),
        ("claude-haiku-4-5", "claude-haiku-4-5", 64_000, True),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5", 64_000, True),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku", 8_192, False),
        ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet", 64_000, True),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet", 8_192, False),
        ("claude-3-opus-20240229", "claude-3-opus", 4_096, False),
        ("claude-3-haiku-20240307", "claude-3-haiku", 4_096, False),
    ],
)
def test_model_limits(
    table: PriceTable,
    model: str,
    listed: str,
    max_output_tokens: int,
    supports_thinking: bool,
) -> None:
    info = table.model(model)
    assert info is not None, model
    assert (info.model, info.max_output_tokens, info.supports_thinking) == (
        listed,
        max_output_tokens,
        supports_thinking,
    )
    assert info.price == table.price_for(model)
    assert info.limits_source


@pytest.mark.parametrize("model", ["gpt-4o", "claude-opus-4-9", "claude-haiku-4-5x", ""])
def test_unknown_models_have_no_row(table: PriceTable, model: str) -> None:
    assert table.model(model) is None


def test_model_ids_are_every_listed_id_sorted(table: PriceTable) -> None:
    ids = table.model_ids
    assert ids == tuple(sorted(ids))
    assert {"claude-haiku-4-5", "claude-opus-4-0", "claude-3-5-haiku"} <= set(ids)
    assert all(table.model(model) is not None for model in ids)


def test_limits_are_sourced_and_dated() -> None:
    raw = json.loads((Path(__file__).parents[3] / "orchestrator/domain/prices.json").read_text())
    assert raw["limits_as_of"] == "2026-11-22"
    assert "platform.claude.com" in raw["limits_source"]
    assert all(row["max_output_tokens"] >= 1 for row in raw["prices"])


def test_a_row_without_max_output_tokens_is_a_config_error(tmp_path: Path) -> None:
    row = {
        "models": ["m"],
        "input": 1,
        "cache_write_5m": 1,
        "cache_write_1h": 1,
        "cache_read": 1,
        "output": 1,
        "as_of": "x",
        "source": "y",
    }
    table = {
        "as_of": "2026-11-22",
        "source": "s",
        "batch_discount": 0.5,
        "limits_as_of": "x",
        "limits_source": "y",
        "lifecycle_source": "z",
    }
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({**table, "prices": [row]}))
    with pytest.raises(ConfigError, match="max_output_tokens"):
        PriceTable.load(path)
    path.write_text(json.dumps({**table, "prices": [{**row, "max_output_tokens": 5}]}))
    info = PriceTable.load(path).model("m")
    assert info is not None
    assert (info.max_output_tokens, info.supports_thinking, info.limits_source) == (5, None, "y")
