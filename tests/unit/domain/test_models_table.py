"""The model table: old ids priced, limits, lifecycle (deprecated / retired), and
``check_model`` refusing what the API would only report after the batch ended.
"""

from __future__ import annotations

import copy
import json
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.params import ModelDeprecatedWarning, ParamsError, check_model
from orchestrator.domain.pricing import PriceTable, UsageCounts, cost_usd
from orchestrator.errors import ConfigError

M = 1_000_000
AS_OF = date(2026, 11, 22)
OUTPUT_300K = "output-300k-2026-03-24"
OUTPUT_128K = "output-128k-2025-02-19"


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def params(model: str = "claude-haiku-4-5", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": model, "max_tokens": 16, "messages": [{"role": "user"}]}
    return {**base, **changes}


# --- prices and limits of the older ids -------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "listed", "input_price", "output_price"),
    [
        ("claude-3-haiku-20240307", "claude-3-haiku", 0.25, 1.25),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku", 0.8, 4.0),
        ("claude-3-5-sonnet-20240620", "claude-3-5-sonnet", 3.0, 15.0),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet", 3.0, 15.0),
        ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet", 3.0, 15.0),
        ("claude-sonnet-4-20250514", "claude-sonnet-4", 3.0, 15.0),
        ("claude-3-opus-20240229", "claude-3-opus", 15.0, 75.0),
        ("claude-opus-4-20250514", "claude-opus-4", 15.0, 75.0),
        ("claude-opus-4-1-20250805", "claude-opus-4-1", 15.0, 75.0),
    ],
)
def test_older_ids_keep_their_list_prices(
    table: PriceTable, model: str, listed: str, input_price: float, output_price: float
) -> None:
    price = table.price_for(model)
    assert price is not None, model
    assert (price.model, price.rates.input, price.rates.output) == (
        listed,
        input_price,
        output_price,
    )
    # A million tokens in and out at half the list price (§9.1).
    assert cost_usd(UsageCounts(M, M), price) == pytest.approx((input_price + output_price) / 2)


@pytest.mark.parametrize(
    ("model", "plain", "with_betas", "thinking", "context"),
    [
        ("claude-3-haiku-20240307", 4_096, 4_096, False, 200_000),
        ("claude-3-opus-20240229", 4_096, 4_096, False, 200_000),
        ("claude-3-5-sonnet-20241022", 8_192, 8_192, False, 200_000),
        ("claude-3-5-haiku-20241022", 8_192, 8_192, False, 200_000),
        ("claude-3-7-sonnet-20250219", 64_000, 128_000, True, 200_000),
        ("claude-sonnet-4-20250514", 64_000, 64_000, True, 200_000),
        ("claude-opus-4-20250514", 32_000, 32_000, True, 200_000),
        ("claude-opus-4-1-20250805", 32_000, 32_000, True, 200_000),
        ("claude-opus-4-6", 128_000, 300_000, True, 1_000_000),
        ("claude-sonnet-4-6", 128_000, 300_000, True, 1_000_000),
        ("claude-haiku-4-5", 64_000, 64_000, True, 200_000),
        ("claude-2.0", 4_096, 4_096, False, 100_000),
    ],
)
def test_limits_thinking_and_context(
    table: PriceTable, model: str, plain: int, with_betas: int, thinking: bool, context: int
) -> None:
    info = table.model(model)
    assert info is not None, model
    assert info.output_limit() == info.max_output_tokens == plain
    assert info.output_limit({OUTPUT_300K, OUTPUT_128K}) == with_betas
    assert (info.supports_thinking, info.context_window) == (thinking, context)


# --- lifecycle ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "status", "retired", "replacement"),
    [
        ("claude-2.0", "retired", date(2025, 7, 21), "claude-sonnet-4-6"),
        ("claude-2.1", "retired", date(2025, 7, 21), "claude-sonnet-4-6"),
        ("claude-3-sonnet-20240229", "retired", date(2025, 7, 21), "claude-sonnet-4-6"),
        ("claude-3-5-sonnet-20240620", "retired", date(2025, 10, 22), "claude-sonnet-4-6"),
        ("claude-3-5-sonnet-20241022", "retired", date(2025, 10, 22), "claude-sonnet-4-6"),
        ("claude-3-opus-20240229", "retired", date(2026, 1, 5), "claude-opus-4-8"),
        ("claude-3-7-sonnet-20250219", "retired", date(2026, 2, 19), "claude-sonnet-4-6"),
        ("claude-3-5-haiku-20241022", "retired", date(2026, 2, 19), "claude-haiku-4-5"),
        ("claude-3-haiku-20240307", "retired", date(2026, 4, 19), "claude-haiku-4-5"),
        ("claude-sonnet-4-20250514", "retired", date(2026, 6, 15), "claude-sonnet-4-6"),
        ("claude-opus-4-0", "retired", date(2026, 6, 15), "claude-opus-4-8"),
        ("claude-opus-4-1", "retired", date(2026, 8, 5), "claude-opus-4-8"),
        ("claude-sonnet-4-5-20250929", "deprecated", date(2026, 11, 30), "claude-sonnet-4-6"),
        ("claude-opus-4-5", "available", None, None),
        ("claude-haiku-4-5-20251001", "available", None, None),
        ("claude-opus-5-5", "available", None, None),
    ],
)
def test_lifecycle_on_the_tables_date(
    table: PriceTable, model: str, status: str, retired: date | None, replacement: str | None
) -> None:
    info = table.model(model)
    assert info is not None, model
    assert (info.status(AS_OF), info.retired, info.replacement) == (status, retired, replacement)
    if status != "available":
        assert info.lifecycle_source


@pytest.mark.parametrize(
    ("alias", "listed"),
    [
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("claude-3-opus-latest", "claude-3-opus"),
    ],
)
def test_latest_aliases_resolve_to_their_row(table: PriceTable, alias: str, listed: str) -> None:
    info = table.model(alias)
    assert info is not None, alias
    assert info.model == listed
    assert table.price_for(alias) == info.price


def test_status_follows_the_day(table: PriceTable) -> None:
    sonnet = table.model("claude-3-7-sonnet")
    assert sonnet is not None
    assert sonnet.status(date(2025, 10, 27)) == "available"  # announced 2025-10-28
    assert sonnet.status(date(2025, 10, 28)) == "deprecated"
    assert sonnet.status(date(2026, 2, 18)) == "deprecated"
    assert sonnet.status(date(2026, 2, 19)) == "retired"
    haiku = table.model("claude-3-5-haiku")  # announcement day not recorded
    assert haiku is not None
    assert haiku.status(date(2025, 1, 1)) == "deprecated"


def test_every_replacement_is_usable_on_the_tables_date(table: PriceTable) -> None:
    usable = set(table.available_ids(AS_OF))
    for model in table.model_ids:
        info = table.model(model)
        assert info is not None
        if info.retired or info.deprecated:
            assert info.replacement in usable, model
    assert "claude-3-opus" not in usable
    assert {"claude-haiku-4-5", "claude-sonnet-4-5"} <= usable


# --- check_model ----------------------------------------------------------------------------


def test_max_tokens_over_the_limit_is_refused_naming_the_limit(table: PriceTable) -> None:
    with pytest.raises(ParamsError) as caught:
        check_model(params(max_tokens=64_001), table, today=AS_OF)
    assert caught.value.path == "max_tokens"
    assert caught.value.message == (
        "64,001 is more than claude-haiku-4-5 can produce: at most 64,000 output tokens; "
        "lower max_tokens"
    )
    check_model(params(max_tokens=64_000), table, today=AS_OF)


def test_a_beta_the_spec_sends_raises_the_limit(table: PriceTable) -> None:
    opus = params("claude-opus-4-6", max_tokens=300_000)
    check_model(opus, table, betas=[OUTPUT_300K], today=AS_OF)
    with pytest.raises(ParamsError, match=r"at most 128,000 output tokens; lower max_tokens$"):
        check_model(opus, table, today=AS_OF)  # betas unknown: only the plain limit
    with pytest.raises(ParamsError) as caught:
        check_model(opus, table, betas=[], today=AS_OF)
    assert caught.value.message.endswith(f'or add "{OUTPUT_300K}" to the spec\'s betas')
    with pytest.raises(ParamsError, match="at most 300,000"):
        check_model({**opus, "max_tokens": 300_001}, table, betas=[OUTPUT_300K], today=AS_OF)


def test_thinking_is_refused_on_3_5_haiku_before_any_deprecation_warning(
    table: PriceTable,
) -> None:
    # On a day before its retirement the model is deprecated; the thinking error comes
    # first (pytest turns warnings into errors, so a warning first would fail here).
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with pytest.raises(ParamsError) as caught:
        check_model(params("claude-3-5-haiku", thinking=thinking), table, today=date(2026, 1, 15))
    assert (caught.value.path, caught.value.message) == (
        "thinking",
        "claude-3-5-haiku does not support thinking; remove thinking",
    )


def test_thinking_disabled_passes_on_3_5_haiku_with_the_deprecation_warning(
    table: PriceTable,
) -> None:
    with pytest.warns(ModelDeprecatedWarning, match="retired on 2026-02-19.*claude-haiku-4-5"):
        check_model(
            params("claude-3-5-haiku", max_tokens=8192, thinking={"type": "disabled"}),
            table,
            today=date(2026, 1, 15),
        )


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "claude-3-opus-20240229",
            "claude-3-opus-20240229 was retired on 2026-01-05 and the API refuses it; "
            "use claude-opus-4-8 instead",
        ),
        (
            "claude-3-5-haiku-latest",
            "claude-3-5-haiku-latest was retired on 2026-02-19 and the API refuses it; "
            "use claude-haiku-4-5 instead",
        ),
        (
            "claude-3-5-sonnet-20241022",
            "claude-3-5-sonnet-20241022 was retired on 2025-10-22 and the API refuses it; "
            "use claude-sonnet-4-6 instead",
        ),
    ],
)
def test_a_retired_model_is_refused_naming_the_replacement(
    table: PriceTable, model: str, message: str
) -> None:
    with pytest.raises(ParamsError) as caught:
        check_model(params(model), table)  # today's date: retired for good
    assert (caught.value.path, caught.value.message) == ("model", message)
    with pytest.raises(ParamsError, match="was retired"):  # known, so never let through
        check_model(params(model), table, allow_unknown=True)


def test_retirement_is_checked_before_the_other_limits(table: PriceTable) -> None:
    old = params("claude-3-5-haiku", max_tokens=10**6, thinking={"type": "adaptive"})
    with pytest.raises(ParamsError, match="was retired on 2026-02-19") as caught:
        check_model(old, table, today=AS_OF)
    assert caught.value.path == "model"


def test_a_deprecated_model_warns_and_passes(table: PriceTable) -> None:
    with pytest.warns(ModelDeprecatedWarning) as record:
        check_model(params("claude-sonnet-4-5-20250929"), table, today=AS_OF)
    assert len(record) == 1
    assert str(record[0].message) == (
        "claude-sonnet-4-5-20250929 is deprecated (it will be retired on 2026-11-30, after "
        "which the API refuses it); move to claude-sonnet-4-6"
    )
    assert record[0].filename == __file__  # attributed to the caller, not to params.py
    assert issubclass(ModelDeprecatedWarning, UserWarning)


def test_a_deprecated_model_becomes_an_error_on_its_retirement_day(table: PriceTable) -> None:
    with pytest.raises(ParamsError, match=r"retired on 2026-11-30.*use claude-sonnet-4-6"):
        check_model(params("claude-sonnet-4-5"), table, today=date(2026, 11, 30))


def test_the_deprecation_warning_can_be_silenced(table: PriceTable) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelDeprecatedWarning)
        check_model(params("claude-sonnet-4-5"), table, today=AS_OF)


def test_active_models_pass_silently(table: PriceTable) -> None:
    check_model(params("claude-haiku-4-5"), table)
    check_model(params("claude-opus-4-5", max_tokens=64_000), table, today=AS_OF)


def test_unknown_model_lists_only_models_still_usable(table: PriceTable) -> None:
    with pytest.raises(ParamsError) as caught:
        check_model(params("claude-foo"), table, today=AS_OF)
    message = caught.value.message
    assert message.startswith("unknown model 'claude-foo'; known: claude-fable-5, ")
    assert all(model in message for model in table.available_ids(AS_OF))
    assert "claude-3-opus" not in message
    assert "claude-sonnet-4-5" in message  # deprecated, still usable


# --- a malformed table is refused, naming the model and the field ---------------------------


ROW: dict[str, Any] = {
    "models": ["claude-x"],
    "input": 1.0,
    "cache_write_5m": 1.25,
    "cache_write_1h": 2.0,
    "cache_read": 0.1,
    "output": 5.0,
    "as_of": "2026-11-22",
    "source": "test",
    "max_output_tokens": 1000,
}
NEW = {**ROW, "models": ["claude-new"]}
HEADER: dict[str, Any] = {
    "as_of": "2026-11-22",
    "source": "test",
    "batch_discount": 0.5,
    "limits_as_of": "2026-11-22",
    "limits_source": "test",
    "lifecycle_source": "test",
}


def write(tmp_path: Path, *rows: dict[str, Any], **header: Any) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({**HEADER, **header, "prices": [copy.deepcopy(r) for r in rows]}))
    return path


def test_a_well_formed_table_loads(tmp_path: Path) -> None:
    old = {**ROW, "retired": "2026-01-01", "replacement": "claude-new"}
    table = PriceTable.load(write(tmp_path, NEW, old))
    info = table.model("claude-x-latest")
    assert info is not None
    assert (info.status(AS_OF), info.replacement, info.lifecycle_source) == (
        "retired",
        "claude-new",
        "test",
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"max_output_tokens": "lots"},
            "model 'claude-x' (prices[1]), field max_output_tokens: Input should be a valid "
            "integer, unable to parse string as an integer",
            id="bad-limit",
        ),
        pytest.param(
            {"max_output_token": 5},
            "model 'claude-x' (prices[1]), field max_output_token: Extra inputs are not permitted",
            id="typo",
        ),
        pytest.param(
            {"retired": "2026-01-01"},
            "model 'claude-x' (prices[1]): field replacement: required when deprecated or "
            "retired is set",
            id="retired-without-replacement",
        ),
        pytest.param(
            {"retired": "1 Jan 2026", "replacement": "claude-new"},
            "model 'claude-x' (prices[1]), field retired: must be a date written YYYY-MM-DD, "
            "not '1 Jan 2026'",
            id="bad-date",
        ),
        pytest.param(
            {"deprecated": "2026-02-01", "retired": "2026-01-01", "replacement": "claude-new"},
            "model 'claude-x' (prices[1]): field deprecated: 2026-02-01 is after the "
            "retirement (2026-01-01)",
            id="deprecated-after-retired",
        ),
        pytest.param(
            {"retired": "2026-01-01", "replacement": "claude-nope"},
            "model 'claude-x', field replacement: 'claude-nope' is not a model of this table",
            id="unknown-replacement",
        ),
        pytest.param(
            {"retired": "2026-01-01", "replacement": "claude-x"},
            "model 'claude-x', field replacement: 'claude-x' is itself retired (since 2026-01-01)",
            id="retired-replacement",
        ),
        pytest.param(
            {"max_output_tokens_with_beta": {"b": 10}},
            "model 'claude-x' (prices[1]): field max_output_tokens_with_beta.b: 10 is below "
            "max_output_tokens (1000)",
            id="beta-below-limit",
        ),
        pytest.param(
            {"models": ["claude-new"]},
            "model 'claude-new' is listed twice",
            id="duplicate",
        ),
    ],
)
def test_a_malformed_entry_names_the_model_and_field(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    path = write(tmp_path, NEW, {**ROW, **changes})
    with pytest.raises(ConfigError) as caught:
        PriceTable.load(path)
    assert str(caught.value) == f"price table {path} is malformed: {expected}"


def test_a_missing_file_level_field_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, ROW, as_of="soon")
    with pytest.raises(ConfigError, match="field as_of: must be a date written YYYY-MM-DD"):
        PriceTable.load(path)
