"""Job specs: the TOML contract of jobs/README.md, loaded, checked and expanded into items.

A spec has one of two forms:

- **template**: ``input`` (a .jsonl, .csv, .parquet, .arrow or .feather dataset, or a
  database query ``sql:SELECT ...``/``table:NAME`` with ``input_url``; see
  ``domain.sources``), ``key`` (the row field that identifies an item) and
  ``[request]`` (Messages API params whose strings are ``{field}`` templates over the
  row; ``prompt`` is sugar for one user message; image and document blocks may name a
  file with ``path``, see ``domain.media``);
- **native**: ``requests``, a .jsonl file of ``{"custom_id": ..., "params": {...}}``
  lines exactly as the API takes them (the user's custom_id becomes the item key).

Every problem is a :class:`~orchestrator.errors.SpecError` naming the file and the
line or field, raised before anything is sent (README, guarantee 4). Datasets are streamed:
:func:`iter_items` never holds the file, so a million rows load in flat memory. Bad rows
do not stop the stream: they are collected (:class:`BadRows`, the first
:data:`MAX_REPORTED_ROWS` kept) and raised together, so one run lists them all.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from orchestrator.domain.bad_rows import MAX_REPORTED_ROWS as MAX_REPORTED_ROWS
from orchestrator.domain.bad_rows import BadRows as BadRows
from orchestrator.domain.bad_rows import BadRowsError as BadRowsError
from orchestrator.domain.contract import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    MAX_BATCH_BYTES,
    MAX_REQUESTS_PER_BATCH,
)
from orchestrator.domain.datasets import jsonl_rows, utf8_problem
from orchestrator.domain.media import MediaError, check_path_blocks, embed_files
from orchestrator.domain.output import (
    DEFAULT_TOOL_NAME,
    OUTPUT_PARAMS,
    TOOL_NAME_PATTERN,
    Output,
    OutputMode,
    OutputSchemaError,
    with_output,
)
from orchestrator.domain.params import ParamsError, check_model, validate_params
from orchestrator.domain.pricing import PriceTable
from orchestrator.domain.sources import Input, check_input, data_chunks, input_rows, parse_input
from orchestrator.domain.sources import display_path as display_path
from orchestrator.domain.sql_input import check_url_syntax, mask_raw_url
from orchestrator.domain.templates import TemplateError, compile_request, request_renderer
from orchestrator.errors import SpecError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
#: A beta flag sent in the ``anthropic-beta`` header, e.g. "output-128k-2025-02-19".
BETA_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
#: Characters a cron field may use: digits, names (JAN, MON), * / , - and ? L W #.
CRON_FIELD_PATTERN = re.compile(r"^[0-9A-Za-z*/,?#-]+$")


class _SpecModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BatchingSpec(_SpecModel):
    """``[batching]``: lower the per-batch limits (never above the API's)."""

    max_requests: int = Field(MAX_REQUESTS_PER_BATCH, ge=1, le=MAX_REQUESTS_PER_BATCH, strict=True)
    max_bytes: int = Field(MAX_BATCH_BYTES, ge=1, le=MAX_BATCH_BYTES, strict=True)


class RetrySpec(_SpecModel):
    """``[retry]``: total attempts per item, the first one included."""

    max_attempts: int = Field(3, ge=1, strict=True)


class OutputSpec(_SpecModel):
    """``[output]``: the answer's JSON Schema (a file beside the spec, or inline) and how
    it is asked for (``domain.output``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: str | dict[str, Any] = Field(alias="schema")
    mode: OutputMode = OutputMode.JSON_SCHEMA
    tool_name: str = Field(DEFAULT_TOOL_NAME, pattern=TOOL_NAME_PATTERN.pattern)


class JobSpec(_SpecModel):
    """One job spec (jobs/README.md). Build it with :func:`load_spec`, which resolves paths."""

    name: str
    #: A resolved dataset path, or a database input's ``sql:``/``table:`` text.
    input: Path | str | None = None
    #: The database of a ``sql:``/``table:`` input; ``${VAR}`` filled when it is read.
    input_url: str | None = Field(None, repr=False)
    key: str | None = Field(None, min_length=1)
    request: dict[str, Any] | None = None
    requests: Path | None = None
    batching: BatchingSpec = BatchingSpec()
    retry: RetrySpec = RetrySpec()
    budget_usd: float | None = Field(None, gt=0)
    schedule: str | None = None
    cache: bool = Field(True, strict=True)
    #: Send identical requests of this job once and share the answer (false: send each).
    dedupe: bool = Field(True, strict=True)
    api_version: str | None = None
    #: Let models the table (prices.json) does not list through, unchecked.
    allow_unknown_models: bool = Field(False, strict=True)
    output: OutputSpec | None = None
    #: Beta flags, sent as the ``anthropic-beta`` header (not in params).
    betas: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError("use 1 to 100 letters, digits, '.', '_' or '-'")
        return name

    @field_validator("betas")
    @classmethod
    def _check_betas(cls, betas: list[str]) -> list[str]:
        for beta in betas:
            if not BETA_PATTERN.match(beta):
                raise ValueError(
                    f"beta flag {beta!r}: use 1 to 100 letters, digits, '.', '_' or '-' "
                    'per flag, e.g. betas = ["output-128k-2025-02-19"]'
                )
        return betas

    @field_validator("input", mode="before")
    @classmethod
    def _parse_input(cls, value: Any, info: ValidationInfo) -> Any:
        """A file relative to the spec file's directory (jobs/README.md), or a query."""
        if value is None:
            return None
        return parse_input(value, Path((info.context or {}).get("base_dir", Path.cwd())))

    @field_validator("requests")
    @classmethod
    def _resolve_path(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        """Relative paths are relative to the spec file's directory (jobs/README.md)."""
        if path is None:
            return None
        if path.suffix.lower() != ".jsonl":
            raise ValueError(f"must be a .jsonl file (got {path.name!r})")
        base = (info.context or {}).get("base_dir", Path.cwd())
        return (Path(base) / path).resolve()

    @field_validator("input_url")
    @classmethod
    def _check_input_url(cls, url: str | None) -> str | None:
        return None if url is None else check_url_syntax(url)

    @field_serializer("input_url")
    def _masked_input_url(self, url: str | None) -> str | None:
        """Dumps (the store keeps the spec) never hold a password written into the URL."""
        return None if url is None else mask_raw_url(url)

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, schedule: str | None) -> str | None:
        if schedule is not None:
            check_cron(schedule)
        return schedule

    @field_validator("api_version")
    @classmethod
    def _check_api_version(cls, version: str | None) -> str | None:
        if version is not None and version not in API_VERSIONS:
            raise ValueError(f"unknown API version; use one of: {', '.join(sorted(API_VERSIONS))}")
        return version

    @model_validator(mode="after")
    def _check_form(self) -> JobSpec:
        template = {"input": self.input, "key": self.key, "request": self.request}
        given = [name for name, value in template.items() if value is not None]
        if self.requests is not None and given:
            raise ValueError(
                "give either input + key + [request] (template form) or requests "
                f"(native form), not both (found requests and {', '.join(given)})"
            )
        if self.requests is None and len(given) < len(template):
            missing = ", ".join(name for name in template if name not in given)
            raise ValueError(
                "nothing to send: give input + key + [request] (template form) or "
                f'requests = "requests.jsonl" (native form); missing: {missing}'
            )
        database = isinstance(self.input, str)
        if database and self.input_url is None:
            raise ValueError(
                'input_url: a database input needs the database: input_url = "sqlite:///'
                'reviews.db" (any SQLAlchemy URL; ${VAR} is filled from the environment)'
            )
        if self.input_url is not None and not database:
            raise ValueError(
                'input_url: only used with input = "sql:SELECT ..." or "table:NAME"; '
                "remove it, or make input a query"
            )
        if self.request is not None:
            compile_request(self.request)
            check_path_blocks(self.request)
        return self

    @property
    def data_path(self) -> Input:
        """The dataset (template form) or requests file (native form); for a database
        input, its ``sql:``/``table:`` text. :func:`display_path` shows either."""
        path = self.input or self.requests
        assert path is not None  # guaranteed by _check_form
        return path


def check_cron(schedule: str) -> None:
    """Check the shape of a 5-field cron string; the daemon does the real parsing."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(
            'must be a 5-field cron expression like "0 3 * * *" '
            f"(minute hour day-of-month month day-of-week); got {len(fields)} fields"
        )
    for field in fields:
        if not CRON_FIELD_PATTERN.match(field):
            raise ValueError(f"cron field {field!r} has characters cron does not use")


@dataclass(frozen=True, slots=True)
class LoadedSpec:
    """A validated spec with its absolute path and a hash of spec + data bytes."""

    spec: JobSpec
    path: Path
    #: sha256 hex over the spec file and its data file: same spec + same data = same hash.
    content_hash: str
    #: ``[output]`` with its schema loaded and checked (None: answers stay text).
    output: Output | None = None


@dataclass(frozen=True, slots=True)
class ItemDraft:
    """One item to store: a row (or native line) rendered into validated params."""

    ordinal: int  #: 0-based row index in the data file (blank lines not counted)
    key: str  #: the user's identifier: the row's key field, or the native custom_id
    line: int  #: 1-based line in the data file where the row starts, for messages
    params: dict[str, Any]
    params_json: bytes  #: canonical JSON (sorted keys, no spaces): the bytes sent
    params_hash: str  #: sha256 hex of params_json
    input_json: bytes | None = None  #: the input row as JSON (template form)
    columns: tuple[str, ...] = ()  #: the input row's columns, in order


def load_spec(path: Path) -> LoadedSpec:
    """Read, validate and hash a job spec; raise SpecError naming file and line or field."""
    path = path.resolve()
    label = display_path(path)
    try:
        spec_bytes = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read the job spec: {exc.strerror}", location=label) from None
    return load_spec_data(_parse_toml(spec_bytes, label), path, spec_bytes)


def load_spec_data(data: dict[str, Any], path: Path, spec_bytes: bytes) -> LoadedSpec:
    """Validate and hash a spec given as data (a TOML file's, or the Python API's);
    relative paths are relative to ``path``'s directory, ``spec_bytes`` is what the
    content hash covers besides the data file and the schema."""
    label = display_path(path)
    try:
        spec = JobSpec.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        raise _validation_error(exc, label) from None
    if spec.requests is not None and not spec.requests.is_file():
        raise SpecError(f"requests file not found: {spec.requests}", location=label)
    if spec.input is not None:
        check_input(spec.input, spec.input_url, label)
    output = load_output(spec, path.parent, label)
    schema = b"" if output is None else orjson.dumps(output.schema, option=orjson.OPT_SORT_KEYS)
    chunks = data_chunks(spec.data_path, spec.input_url, path.parent, label)
    return LoadedSpec(spec, path, _content_hash(spec_bytes + schema, chunks), output)


def load_output(spec: JobSpec, base_dir: Path, label: str) -> Output | None:
    """``[output]`` with its schema read (a file relative to the spec, or inline) and
    checked; a template request that writes the same params itself is refused."""
    section = spec.output
    if section is None:
        return None
    where, raw = f"{label}: output.schema", section.schema_
    if isinstance(raw, str):
        file = (base_dir / raw).resolve()
        where = display_path(file)
        try:
            raw = orjson.loads(file.read_bytes())
        except OSError as exc:
            message = f"output.schema: cannot read {raw}: {exc.strerror}"
            raise SpecError(message, location=label) from None
        except orjson.JSONDecodeError as exc:
            raise SpecError(f"not JSON: {exc.msg}", location=f"{where}:{exc.lineno}") from None
    try:
        output = Output.checked(raw, section.mode, section.tool_name)
    except OutputSchemaError as exc:
        raise SpecError(f"the output schema {exc}", location=where) from None
    for name in OUTPUT_PARAMS:
        if spec.request is not None and name in spec.request:
            raise SpecError(
                f"request.{name}: [output] writes tools, tool_choice and output_config "
                "itself; remove it from [request], or drop [output]",
                location=label,
            )
    thinking = (spec.request or {}).get("thinking")
    if output.mode is OutputMode.TOOL and isinstance(thinking, dict):
        if thinking.get("type") in ("enabled", "adaptive"):
            raise SpecError(
                "request.thinking: a forced tool can't be combined with thinking; use "
                'mode = "json_schema", or turn thinking off',
                location=label,
            )
    return output


def _parse_toml(spec_bytes: bytes, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(spec_bytes.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line_no = spec_bytes.count(b"\n", 0, exc.start) + 1
        line = spec_bytes[spec_bytes.rfind(b"\n", 0, exc.start) + 1 :].split(b"\n", 1)[0]
        problem = utf8_problem(line) or "not valid UTF-8"
        raise SpecError(f"the job spec is {problem}", location=f"{label}:{line_no}") from None
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
        if found is None:
            raise SpecError(f"invalid TOML: {text}", location=label) from None
        message = f"invalid TOML: {text[: found.start()]} (column {found[2]})"
        raise SpecError(message, location=f"{label}:{found[1]}") from None


def _validation_error(exc: ValidationError, label: str) -> SpecError:
    """All field errors, one per line, each as ``file: field.path: message``."""
    lines = [_field_error(error) for error in exc.errors(include_url=False)]
    return SpecError(f"\n{label}: ".join(lines), location=label)


def _field_error(error: ErrorDetails) -> str:
    loc = tuple(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        sections: dict[str, type[BaseModel]] = {"batching": BatchingSpec, "retry": RetrySpec}
        section = sections.get(loc[0], JobSpec) if len(loc) > 1 else JobSpec
        allowed = ", ".join(section.model_fields)
        message = f"unknown field (allowed here: {allowed})"
    return f"{'.'.join(loc)}: {message}" if loc else message


def _content_hash(spec_bytes: bytes, data: Iterable[bytes]) -> str:
    digest = hashlib.sha256(len(spec_bytes).to_bytes(8, "big"))
    digest.update(spec_bytes)
    for chunk in data:
        digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def shipped_models() -> PriceTable:
    """The model table shipped with the package (``prices.json``), loaded once."""
    return PriceTable.load()


@dataclass(frozen=True, slots=True)
class _RowChecks:
    """What every rendered request is checked against."""

    api_version: str
    models: PriceTable
    allow_unknown_models: bool
    output: Output | None = None
    #: The spec's beta flags: some raise a model's output limit.
    betas: tuple[str, ...] = ()
    #: (model, max_tokens, thinking type) already checked against the model table: a
    #: job's rows mostly repeat one, and the check is the same for all of them.
    models_passed: set[tuple[str, object, object]] = dataclasses.field(default_factory=set)


def iter_items(
    loaded: LoadedSpec,
    *,
    default_api_version: str = DEFAULT_API_VERSION,
    models: PriceTable | None = None,
    bad_rows: BadRows | None = None,
) -> Iterator[ItemDraft]:
    """Stream the spec's good items in file order, each rendered and validated.

    Re-opens the data file on every call; memory stays flat in the file's size.
    Params are validated for the spec's ``api_version`` or else ``default_api_version``
    (the orchestrator's setting), and checked against ``models`` (default: the shipped
    table): unknown model, ``max_tokens`` above the model's limit. Duplicate keys are
    the store's to detect.

    A bad row is skipped and reported, so that one run finds them all: into ``bad_rows``
    when given (the caller raises it, e.g. before committing), else all together as one
    SpecError once the file has been read. A problem that stops the reading (a bad CSV
    header or quoting) is raised at once, with the bad rows found before it.
    """
    collector = bad_rows if bad_rows is not None else BadRows(display_path(loaded.spec.data_path))
    rows = item_rows(loaded, default_api_version=default_api_version, models=models)
    yield from good_items(rows, collector)
    if bad_rows is None:
        collector.raise_if_any()


def item_rows(
    loaded: LoadedSpec,
    *,
    default_api_version: str = DEFAULT_API_VERSION,
    models: PriceTable | None = None,
) -> Iterator[ItemDraft | SpecError]:
    """The spec's items and bad rows (each a SpecError) in file order: what
    :func:`iter_items` reads, before :func:`good_items` sets the bad rows aside. A
    problem that stops the reading is raised as it is (``good_items`` adds the bad
    rows found before it)."""
    spec = loaded.spec
    checks = _RowChecks(
        api_version=spec.api_version or default_api_version,
        models=models if models is not None else shipped_models(),
        allow_unknown_models=spec.allow_unknown_models,
        output=loaded.output,
        betas=tuple(spec.betas),
    )
    if spec.requests is not None:
        return _native_items(spec.requests, checks)
    return _template_items(spec, loaded.path, checks)


def good_items(rows: Iterable[ItemDraft | SpecError], bad_rows: BadRows) -> Iterator[ItemDraft]:
    """The items of ``rows`` (from :func:`item_rows`), its bad rows into ``bad_rows``;
    a problem that stops the reading is raised with the bad rows found before it."""
    try:
        for row in rows:
            if isinstance(row, SpecError):
                bad_rows.add(row)
            else:
                yield row
    except SpecError as fatal:
        bad_rows.add(fatal)
        raise bad_rows.error() from None


def _template_items(
    spec: JobSpec, spec_path: Path, checks: _RowChecks
) -> Iterator[ItemDraft | SpecError]:
    assert spec.input is not None
    assert spec.key is not None
    assert spec.request is not None
    render_request = request_renderer(compile_request(spec.request))
    with_files = check_path_blocks(spec.request)
    base_dir = spec_path.parent  # paths in rows (images, PDFs) are relative to the spec
    label = display_path(spec.input)
    rows = input_rows(spec.input, spec.input_url, base_dir, display_path(spec_path))
    for ordinal, (line, row) in enumerate(rows):
        if isinstance(row, SpecError):
            yield row
            continue
        where = f"{label}:{line}"
        try:
            key = _row_key(row, spec.key, where)
            params = render_request(row)
            if with_files:
                params = embed_files(params, base_dir)
            draft = _draft(ordinal, key, line, params, checks, where, "request", row)
        except TemplateError as exc:
            yield SpecError(str(exc), location=where)
        except MediaError as exc:
            yield SpecError(f"request.{exc}", location=where)
        except SpecError as exc:
            yield exc
        else:
            yield draft


def _native_items(path: Path, checks: _RowChecks) -> Iterator[ItemDraft | SpecError]:
    label = display_path(path)
    for ordinal, (line, obj) in enumerate(jsonl_rows(path, label)):
        if isinstance(obj, SpecError):
            yield obj
            continue
        try:
            draft = _native_draft(ordinal, line, obj, checks, f"{label}:{line}")
        except SpecError as exc:
            yield exc
        else:
            yield draft


def _native_draft(
    ordinal: int, line: int, obj: dict[str, Any], checks: _RowChecks, where: str
) -> ItemDraft:
    unexpected = sorted(set(obj) - {"custom_id", "params"})
    if unexpected:
        raise SpecError(
            f'unexpected field {unexpected[0]!r}; each line is {{"custom_id": ..., '
            '"params": {...}}',
            location=where,
        )
    key = _row_key(obj, "custom_id", where)
    params = obj.get("params")
    if not isinstance(params, dict):
        problem = "has no" if params is None else "needs an object as its"
        raise SpecError(f'line {problem} "params" (the Messages API params)', location=where)
    return _draft(ordinal, key, line, params, checks, where, "params")


def _row_key(row: dict[str, Any], field: str, where: str) -> str:
    if field not in row or row[field] is None:
        raise SpecError(f"row has no field {field!r} (the item key)", location=where)
    key = row[field] if isinstance(row[field], str) else str(row[field])
    if not key:
        raise SpecError(f"row has an empty key field {field!r}", location=where)
    return key


def _exact(encoded: bytes) -> bytes:
    """A copy of orjson's output that takes only its length in memory: orjson hands back
    a bytes object that keeps its whole write buffer (4 KB at least, 16 KB for a 2 KB
    row), and a chunk of 5,000 drafts kept two of them each: 325 MB for 2 KB prompts."""
    return memoryview(encoded).tobytes()


def _draft(
    ordinal: int,
    key: str,
    line: int,
    params: dict[str, Any],
    checks: _RowChecks,
    where: str,
    prefix: str,
    row: dict[str, Any] | None = None,
) -> ItemDraft:
    try:
        if checks.output is not None:
            params = with_output(params, checks.output)
        validate_params(params, api_version=checks.api_version)
        thinking = params.get("thinking")
        seen = (
            str(params["model"]),
            params["max_tokens"],
            thinking.get("type") if isinstance(thinking, dict) else None,
        )
        if seen not in checks.models_passed:
            check_model(
                params, checks.models, allow_unknown=checks.allow_unknown_models, betas=checks.betas
            )
            checks.models_passed.add(seen)
        params_json = _exact(orjson.dumps(params, option=orjson.OPT_SORT_KEYS))
    except ParamsError as exc:
        path = f"{prefix}.{exc.path}" if exc.path else prefix
        raise SpecError(f"{path}: {exc.message}", location=where) from None
    except orjson.JSONEncodeError as exc:
        raise SpecError(f"{prefix}: cannot encode as JSON: {exc}", location=where) from None
    digest = hashlib.sha256(params_json).hexdigest()
    if row is None:
        return ItemDraft(ordinal, key, line, params, params_json, digest)
    input_json = _exact(orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS))
    return ItemDraft(ordinal, key, line, params, params_json, digest, input_json, tuple(row))
