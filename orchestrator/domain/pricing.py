"""Token cost at batch prices (api/message-batches.md §9), and the model table.

Prices are data, not code: ``prices.json`` holds the published standard prices in
USD per million tokens, each row dated and sourced, and the batch discount (50 %
of standard for every token category) is applied here. Only ``succeeded``
results are billed (§5.4); callers pass only those to :func:`cost_usd`.

The same rows carry what spec validation needs to know of each model
(:meth:`PriceTable.model`): its ``max_output_tokens`` (and what a beta header
raises it to, §1.4), its context window, whether it takes ``thinking``, and its
lifecycle: the day it was deprecated, the day it is (or was) retired and the model
to move to. A model id the table does not list is an unknown model. Retired models
keep their prices, so results bought before the retirement are still costed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from orchestrator.errors import ConfigError

#: Characters per token for the pre-flight estimate: a rough, documented rule of thumb.
APPROX_BYTES_PER_TOKEN = 4
TOKENS_PER_MTOK = 1_000_000
COST_DECIMALS = 9  #: costs are rounded to 1e-9 USD
#: A dated variant of a listed id, e.g. claude-haiku-4-5 + "-20251001".
_DATED_SUFFIX = re.compile(r"^-(?:\d{8}|latest)$")
#: Distinct ids whose match is remembered (bounded: ids come from user data).
_MAX_MATCHED_IDS = 1024
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: How many validation problems a malformed table's message lists.
_MAX_LISTED_PROBLEMS = 5

#: Where a model is in its life: usable, usable but on its way out, or refused by the API
#: (Anthropic calls the first "active"; that word is a job state here, see domain/states.py).
ModelStatus = Literal["available", "deprecated", "retired"]


def _iso_date(value: object) -> date:
    """A ``YYYY-MM-DD`` string as a date (no timestamps, no other formats)."""
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"must be a date written YYYY-MM-DD, not {value!r}")


IsoDate = Annotated[date, BeforeValidator(_iso_date)]


class _Rates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    cache_write_5m: float = Field(ge=0)
    cache_write_1h: float = Field(ge=0)
    cache_read: float = Field(ge=0)
    output: float = Field(ge=0)


class _LongPromptRates(_Rates):
    above_input_tokens: int = Field(ge=1)


class _PriceRow(_Rates):
    models: list[str] = Field(min_length=1)
    long_prompt: _LongPromptRates | None = None
    geo_multipliers: dict[str, float] = {}
    as_of: str
    source: str
    #: The largest max_tokens the model accepts (without the batch-only 300k beta, §1.4).
    max_output_tokens: int = Field(ge=1)
    #: What an ``anthropic-beta`` value raises max_output_tokens to (§1.4).
    max_output_tokens_with_beta: dict[str, Annotated[int, Field(ge=1)]] = {}
    #: Input + output tokens the model can hold; None when not known.
    context_window: int | None = Field(default=None, ge=1)
    #: Whether the model takes a ``thinking`` param; None when the table does not say.
    supports_thinking: bool | None = None
    #: Where max_output_tokens comes from when not from the file's ``limits_source``.
    limits_source: str | None = None
    #: The day the deprecation was announced (None: not deprecated, or day not recorded).
    deprecated: IsoDate | None = None
    #: The day requests to the model start failing, past or scheduled.
    retired: IsoDate | None = None
    #: The listed model to move to; required with ``deprecated`` or ``retired``.
    replacement: str | None = None
    #: Where the lifecycle fields come from when not from the file's ``lifecycle_source``.
    lifecycle_source: str | None = None
    #: What is uncertain about this row.
    note: str | None = None

    @model_validator(mode="after")
    def _check_lifecycle(self) -> _PriceRow:
        if (self.deprecated or self.retired) and not self.replacement:
            raise ValueError("field replacement: required when deprecated or retired is set")
        if self.deprecated and self.retired and self.deprecated > self.retired:
            raise ValueError(
                f"field deprecated: {self.deprecated} is after the retirement ({self.retired})"
            )
        for beta, limit in self.max_output_tokens_with_beta.items():
            if limit < self.max_output_tokens:
                raise ValueError(
                    f"field max_output_tokens_with_beta.{beta}: {limit} is below "
                    f"max_output_tokens ({self.max_output_tokens})"
                )
        return self


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    as_of: IsoDate
    source: str
    batch_discount: float = Field(ge=0, lt=1)
    limits_as_of: str
    limits_source: str
    lifecycle_source: str
    prices: list[_PriceRow]


@dataclass(frozen=True, slots=True)
class TokenRates:
    """Standard prices in USD per million tokens for each token category."""

    input: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    output: float


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """The price row for one model id, with what applies on top of its rates."""

    model: str  #: the listed id that matched
    rates: TokenRates
    batch_discount: float  #: 0.5: batch requests cost half the standard price (§9.1)
    as_of: str
    source: str
    #: (geo, multiplier) pairs for usage.inference_geo, e.g. ("us", 1.1) on 4.6+ models.
    geo_multipliers: tuple[tuple[str, float], ...] = ()
    #: Rates for prompts above ``long_prompt_above`` input tokens (tiered models only).
    long_prompt_rates: TokenRates | None = None
    long_prompt_above: int | None = None
    # Looked up per result and per item: computed once, from ``geo_multipliers``.
    _geo: dict[str, float] = field(init=False, repr=False, compare=False)
    _max_geo: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_geo", dict(self.geo_multipliers))
        object.__setattr__(self, "_max_geo", max((m for _, m in self.geo_multipliers), default=1.0))

    def rates_for(self, total_input_tokens: int) -> TokenRates:
        """The rates that apply to a prompt of this many input tokens (all kinds)."""
        above = self.long_prompt_above
        if self.long_prompt_rates is not None and above is not None:
            if total_input_tokens > above:
                return self.long_prompt_rates
        return self.rates

    def geo_multiplier(self, inference_geo: str | None) -> float:
        """1.1 for ``"us"`` on models that charge for it, else 1.0 (§9.1)."""
        return self._geo.get(inference_geo or "", 1.0)

    @property
    def max_geo_multiplier(self) -> float:
        return self._max_geo


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the table knows of one model: its limits, its lifecycle and its price."""

    model: str  #: the listed id that matched
    max_output_tokens: int  #: the largest max_tokens it accepts without beta headers
    supports_thinking: bool | None  #: None when the table does not say
    limits_source: str  #: where max_output_tokens comes from
    price: ModelPrice
    context_window: int | None = None  #: None when not known
    #: (beta, max_output_tokens) pairs: what each anthropic-beta value raises the limit to.
    max_output_tokens_with_beta: tuple[tuple[str, int], ...] = ()
    deprecated: date | None = None  #: the day the deprecation was announced, if recorded
    retired: date | None = None  #: the day requests start failing, past or scheduled
    replacement: str | None = None  #: the listed model to move to
    lifecycle_source: str | None = None
    note: str | None = None

    def status(self, today: date) -> ModelStatus:
        """``retired`` from its retirement day on; ``deprecated`` once announced (or when a
        retirement is scheduled though the announcement day is not recorded); else ``available``.
        """
        if self.retired is not None and self.retired <= today:
            return "retired"
        if self.deprecated is not None:
            return "deprecated" if self.deprecated <= today else "available"
        return "deprecated" if self.retired is not None else "available"

    def output_limit(self, betas: Collection[str] = ()) -> int:
        """The largest max_tokens a request may ask for when these beta flags are sent."""
        raised = (limit for beta, limit in self.max_output_tokens_with_beta if beta in betas)
        return max([self.max_output_tokens, *raised])


class PriceTable:
    """The dated price and model table; look models up with :meth:`model` or :meth:`price_for`."""

    def __init__(self, models: Mapping[str, ModelInfo], as_of: date, source: str = "") -> None:
        self._models = dict(models)
        self.as_of = as_of  #: the day the table as a whole was last checked
        self.source = source
        #: Every listed model id, sorted (dated variants of these match too), retired ones included.
        self.model_ids = tuple(sorted(self._models))
        self._matched: dict[str, ModelInfo | None] = {}  #: ids looked up before, bounded

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """Load ``path``, or the ``prices.json`` shipped in this package.

        A malformed file is a ConfigError naming the model (row) and field at fault.
        """
        where = str(path) if path is not None else "prices.json"
        if path is None:
            raw = resources.files("orchestrator.domain").joinpath("prices.json").read_bytes()
        else:
            raw = path.read_bytes()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"price table {where} is malformed: not JSON: {exc}") from None
        try:
            table = _PriceFile.model_validate(data)
        except ValidationError as exc:
            problems = _describe_errors(exc, data)
            raise ConfigError(f"price table {where} is malformed: {problems}") from None
        models: dict[str, ModelInfo] = {}
        for row in table.prices:
            for model in row.models:
                if model in models:
                    raise ConfigError(
                        f"price table {where} is malformed: model {model!r} is listed twice"
                    )
                models[model] = _model_info(model, row, table)
        found = cls(models, table.as_of, table.source)
        found._check_replacements(where)
        return found

    def _check_replacements(self, where: str) -> None:
        """Every replacement is a listed model that is not itself retired by the table's date."""
        for model, info in self._models.items():
            if info.replacement is None:
                continue
            target = self.model(info.replacement)
            if target is None:
                problem = f"{info.replacement!r} is not a model of this table"
            elif target.status(self.as_of) == "retired":
                problem = f"{info.replacement!r} is itself retired (since {target.retired})"
            else:
                continue
            raise ConfigError(
                f"price table {where} is malformed: model {model!r}, field replacement: {problem}"
            )

    def available_ids(self, today: date) -> tuple[str, ...]:
        """The listed ids a request may still use on ``today`` (not retired), sorted."""
        return tuple(m for m in self.model_ids if self._models[m].status(today) != "retired")

    def model(self, model: str) -> ModelInfo | None:
        """``model``'s row: exact id, else the longest listed id it is a dated variant of."""
        if model in self._models:
            return self._models[model]
        if model in self._matched:  # every row of a dataset names the same few ids
            return self._matched[model]
        matches = [
            listed
            for listed in self._models
            if model.startswith(listed) and _DATED_SUFFIX.match(model[len(listed) :])
        ]
        found = self._models[max(matches, key=len)] if matches else None
        if len(self._matched) < _MAX_MATCHED_IDS:
            self._matched[model] = found
        return found

    def price_for(self, model: str) -> ModelPrice | None:
        """The price of ``model`` (matched as :meth:`model` does), or None for an unknown model."""
        info = self.model(model)
        return info.price if info is not None else None


def _model_info(model: str, row: _PriceRow, table: _PriceFile) -> ModelInfo:
    lifecycle = row.deprecated is not None or row.retired is not None
    return ModelInfo(
        model=model,
        max_output_tokens=row.max_output_tokens,
        supports_thinking=row.supports_thinking,
        limits_source=row.limits_source or table.limits_source,
        price=_model_price(model, row, table.batch_discount),
        context_window=row.context_window,
        max_output_tokens_with_beta=tuple(sorted(row.max_output_tokens_with_beta.items())),
        deprecated=row.deprecated,
        retired=row.retired,
        replacement=row.replacement,
        lifecycle_source=(row.lifecycle_source or table.lifecycle_source) if lifecycle else None,
        note=row.note,
    )


def _describe_errors(exc: ValidationError, data: Any) -> str:
    """The first few problems, each naming the row's model and the field, e.g.
    ``model 'claude-x' (prices[3]), field max_output_tokens: Field required``.
    """
    problems = []
    errors = exc.errors(include_url=False)
    for error in errors[:_MAX_LISTED_PROBLEMS]:
        loc = error["loc"]
        message = error["msg"].removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "prices" and isinstance(loc[1], int):
            field = ".".join(str(part) for part in loc[2:])
            where = f"model {_row_name(data, loc[1])} (prices[{loc[1]}])"
            problems.append(
                f"{where}, field {field}: {message}" if field else f"{where}: {message}"
            )
        else:
            field = ".".join(str(part) for part in loc)
            problems.append(f"field {field}: {message}" if field else message)
    if len(errors) > _MAX_LISTED_PROBLEMS:
        problems.append(f"and {len(errors) - _MAX_LISTED_PROBLEMS} more")
    return "; ".join(problems)


def _row_name(data: Any, index: int) -> str:
    """The first model id of row ``index`` as written, for messages."""
    try:
        models = data["prices"][index]["models"]
        first = models[0]
    except (KeyError, IndexError, TypeError):
        return "(row without model ids)"
    return repr(first) if isinstance(first, str) else "(row without model ids)"


def _model_price(model: str, row: _PriceRow, batch_discount: float) -> ModelPrice:
    long_rates = None
    if row.long_prompt is not None:
        long_rates = _rates(row.long_prompt)
    return ModelPrice(
        model=model,
        rates=_rates(row),
        batch_discount=batch_discount,
        as_of=row.as_of,
        source=row.source,
        geo_multipliers=tuple(sorted(row.geo_multipliers.items())),
        long_prompt_rates=long_rates,
        long_prompt_above=row.long_prompt.above_input_tokens if row.long_prompt else None,
    )


def _rates(row: _Rates) -> TokenRates:
    return TokenRates(row.input, row.cache_write_5m, row.cache_write_1h, row.cache_read, row.output)


@dataclass(frozen=True, slots=True)
class UsageCounts:
    """The billable part of a succeeded result's ``usage`` (§2.6)."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    #: cache_creation.ephemeral_5m/1h_input_tokens; None when the split is absent.
    cache_5m_tokens: int | None = None
    cache_1h_tokens: int | None = None
    inference_geo: str | None = None

    @property
    def total_input_tokens(self) -> int:
        """input + cache writes + cache reads (§2.6)."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


def cost_usd(usage: UsageCounts, price: ModelPrice) -> float:
    """Batch cost of one succeeded result in USD, rounded to 1e-9 (§9.1).

    Without the 5m/1h split, every cache write counts as a 5-minute write.
    """
    rates = price.rates_for(usage.total_input_tokens)
    five_min, one_hour = usage.cache_5m_tokens, usage.cache_1h_tokens
    if five_min is None and one_hour is None:
        five_min, one_hour = usage.cache_creation_input_tokens, 0
    standard = (
        usage.input_tokens * rates.input
        + (five_min or 0) * rates.cache_write_5m
        + (one_hour or 0) * rates.cache_write_1h
        + usage.cache_read_input_tokens * rates.cache_read
        + usage.output_tokens * rates.output
    )
    multiplier = (1 - price.batch_discount) * price.geo_multiplier(usage.inference_geo)
    return round(multiplier * standard / TOKENS_PER_MTOK, COST_DECIMALS)


def estimate_cost_usd(price: ModelPrice, input_tokens: int, max_output_tokens: int) -> float:
    """Upper-bound batch cost of one request for budget checks, in USD.

    Assumes every output token up to max_tokens is produced and the highest
    data-residency multiplier; input is priced as uncached input (cache writes
    requested by the prompt itself are not foreseen).
    """
    rates = price.rates_for(input_tokens)
    standard = input_tokens * rates.input + max_output_tokens * rates.output
    multiplier = (1 - price.batch_discount) * price.max_geo_multiplier
    return round(multiplier * standard / TOKENS_PER_MTOK, COST_DECIMALS)


def approx_input_tokens(params_json: bytes) -> int:
    """A rough input token count: one token per 4 bytes of the params JSON, rounded up.

    Overestimates for JSON punctuation and underestimates for dense non-Latin text;
    good enough for a budget pre-check, not for billing (use the count_tokens endpoint).
    """
    return math.ceil(len(params_json) / APPROX_BYTES_PER_TOKEN)
