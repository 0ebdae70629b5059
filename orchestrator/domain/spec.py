"""Job specs: the TOML contract of jobs/README.md, loaded, checked and expanded into items.

A spec has one of two forms:

- **template**: ``input`` (a .jsonl or .csv dataset), ``key`` (the row field that
  identifies an item) and ``[request]`` (Messages API params whose strings are
  ``{field}`` templates over the row; ``prompt`` is sugar for one user message);
- **native**: ``requests``, a .jsonl file of ``{"custom_id": ..., "params": {...}}``
  lines exactly as the API takes them (the user's custom_id becomes the item key).

Every problem is a :class:`~orchestrator.errors.SpecError` naming the file and the
line or field, raised before anything is sent (README, guarantee 4). Datasets are streamed:
:func:`iter_items` never holds the file, so a million rows load in flat memory.
"""

from __future__ import annotations

import csv
import hashlib
import re
import tomllib
from collections.abc import Iterator
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
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from orchestrator.domain.contract import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    MAX_BATCH_BYTES,
    MAX_REQUESTS_PER_BATCH,
)
from orchestrator.domain.params import ParamsError, validate_params
from orchestrator.domain.templates import MissingField, compile_request, render_request
from orchestrator.errors import SpecError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
#: Characters a cron field may use: digits, names (JAN, MON), * / , - and ? L W #.
CRON_FIELD_PATTERN = re.compile(r"^[0-9A-Za-z*/,?#-]+$")
INPUT_SUFFIXES = (".jsonl", ".csv")
HASH_CHUNK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"


class _SpecModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BatchingSpec(_SpecModel):
    """``[batching]``: lower the per-batch limits (never above the API's)."""

    max_requests: int = Field(MAX_REQUESTS_PER_BATCH, ge=1, le=MAX_REQUESTS_PER_BATCH, strict=True)
    max_bytes: int = Field(MAX_BATCH_BYTES, ge=1, le=MAX_BATCH_BYTES, strict=True)


class RetrySpec(_SpecModel):
    """``[retry]``: total attempts per item, the first one included."""

    max_attempts: int = Field(3, ge=1, strict=True)


class JobSpec(_SpecModel):
    """One job spec (jobs/README.md). Build it with :func:`load_spec`, which resolves paths."""

    name: str
    input: Path | None = None
    key: str | None = Field(None, min_length=1)
    request: dict[str, Any] | None = None
    requests: Path | None = None
    batching: BatchingSpec = BatchingSpec()
    retry: RetrySpec = RetrySpec()
    budget_usd: float | None = Field(None, gt=0)
    schedule: str | None = None
    cache: bool = Field(True, strict=True)
    api_version: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError("use 1 to 100 letters, digits, '.', '_' or '-'")
        return name

    @field_validator("input", "requests")
    @classmethod
    def _resolve_path(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        """Relative paths are relative to the spec file's directory (jobs/README.md)."""
        if path is None:
            return None
        suffixes = INPUT_SUFFIXES if info.field_name == "input" else (".jsonl",)
        if path.suffix.lower() not in suffixes:
            raise ValueError(f"must be a {' or '.join(suffixes)} file (got {path.name!r})")
        base = (info.context or {}).get("base_dir", Path.cwd())
        return (Path(base) / path).resolve()

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
        if self.request is not None:
            compile_request(self.request)
        return self

    @property
    def data_path(self) -> Path:
        """The dataset (template form) or requests file (native form)."""
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


@dataclass(frozen=True, slots=True)
class ItemDraft:
    """One item to store: a row (or native line) rendered into validated params."""

    ordinal: int  #: 0-based row index in the data file (blank lines not counted)
    key: str  #: the user's identifier: the row's key field, or the native custom_id
    line: int  #: 1-based line in the data file where the row starts, for messages
    params: dict[str, Any]
    params_json: bytes  #: canonical JSON (sorted keys, no spaces): the bytes sent
    params_hash: str  #: sha256 hex of params_json


def load_spec(path: Path) -> LoadedSpec:
    """Read, validate and hash a job spec; raise SpecError naming file and line or field."""
    path = path.resolve()
    label = display_path(path)
    try:
        spec_bytes = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read the job spec: {exc.strerror}", location=label) from None
    data = _parse_toml(spec_bytes, label)
    try:
        spec = JobSpec.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        raise _validation_error(exc, label) from None
    if not spec.data_path.is_file():
        field = "input" if spec.input is not None else "requests"
        raise SpecError(f"{field} file not found: {spec.data_path}", location=label)
    return LoadedSpec(spec, path, _content_hash(spec_bytes, spec.data_path))


def display_path(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _parse_toml(spec_bytes: bytes, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(spec_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise SpecError("the job spec is not valid UTF-8", location=label) from None
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


def _content_hash(spec_bytes: bytes, data_path: Path) -> str:
    digest = hashlib.sha256(len(spec_bytes).to_bytes(8, "big"))
    digest.update(spec_bytes)
    with data_path.open("rb") as data:
        while chunk := data.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def iter_items(
    loaded: LoadedSpec, *, default_api_version: str = DEFAULT_API_VERSION
) -> Iterator[ItemDraft]:
    """Stream the spec's items in file order, each rendered and validated.

    Re-opens the data file on every call; memory stays flat in the file's size.
    Params are validated for the spec's ``api_version`` or else ``default_api_version``
    (the orchestrator's setting). Duplicate keys are the store's to detect.
    """
    spec = loaded.spec
    version = spec.api_version or default_api_version
    if spec.requests is not None:
        return _native_items(spec.requests, version)
    return _template_items(spec, version)


def _template_items(spec: JobSpec, version: str) -> Iterator[ItemDraft]:
    assert spec.input is not None
    assert spec.key is not None
    assert spec.request is not None
    compiled = compile_request(spec.request)
    label = display_path(spec.input)
    csv_input = spec.input.suffix.lower() == ".csv"
    rows = _csv_rows(spec.input, label) if csv_input else _jsonl_rows(spec.input, label)
    for ordinal, (line, row) in enumerate(rows):
        where = f"{label}:{line}"
        key = _row_key(row, spec.key, where)
        try:
            params = render_request(compiled, row)
        except MissingField as exc:
            raise SpecError(str(exc), location=where) from None
        yield _draft(ordinal, key, line, params, version, where, "request")


def _native_items(path: Path, version: str) -> Iterator[ItemDraft]:
    label = display_path(path)
    for ordinal, (line, obj) in enumerate(_jsonl_rows(path, label)):
        where = f"{label}:{line}"
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
        yield _draft(ordinal, key, line, params, version, where, "params")


def _row_key(row: dict[str, Any], field: str, where: str) -> str:
    if field not in row or row[field] is None:
        raise SpecError(f"row has no field {field!r} (the item key)", location=where)
    key = row[field] if isinstance(row[field], str) else str(row[field])
    if not key:
        raise SpecError(f"row has an empty key field {field!r}", location=where)
    return key


def _draft(
    ordinal: int,
    key: str,
    line: int,
    params: dict[str, Any],
    version: str,
    where: str,
    prefix: str,
) -> ItemDraft:
    try:
        validate_params(params, api_version=version)
        params_json = orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
    except ParamsError as exc:
        path = f"{prefix}.{exc.path}" if exc.path else prefix
        raise SpecError(f"{path}: {exc.message}", location=where) from None
    except orjson.JSONEncodeError as exc:
        raise SpecError(f"{prefix}: cannot encode as JSON: {exc}", location=where) from None
    digest = hashlib.sha256(params_json).hexdigest()
    return ItemDraft(ordinal, key, line, params, params_json, digest)


def _jsonl_rows(path: Path, label: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line; binary mode splits on b"\\n" only."""
    with path.open("rb") as lines:
        for line_no, raw in enumerate(lines, start=1):
            text = raw.removeprefix(_BOM) if line_no == 1 else raw
            if not text.strip():
                continue
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                message = f"invalid JSON at column {exc.colno}: {exc.msg}"
                raise SpecError(message, location=f"{label}:{line_no}") from None
            if not isinstance(value, dict):
                kind = type(value).__name__.replace("list", "array").replace("dict", "object")
                message = f"expected a JSON object on each line, got {kind}"
                raise SpecError(message, location=f"{label}:{line_no}")
            yield line_no, value


def _csv_rows(path: Path, label: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line where the record starts, row) per record; quoted fields may span lines."""
    end = 0
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(text)
            header: list[str] | None = None
            for record in reader:
                start, end = end + 1, reader.line_num
                if not record:
                    continue  # blank line
                if header is None:
                    header = _csv_header(record, f"{label}:{start}")
                elif len(record) != len(header):
                    raise SpecError(
                        f"row has {len(record)} fields but the header has {len(header)}",
                        location=f"{label}:{start}",
                    )
                else:
                    yield start, dict(zip(header, record, strict=True))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise SpecError(f"unreadable CSV: {exc}", location=f"{label}:{end + 1}") from None


def _csv_header(record: list[str], where: str) -> list[str]:
    seen: set[str] = set()
    for name in record:
        if not name or name in seen:
            problem = "an empty column name" if not name else f"column {name!r} twice"
            raise SpecError(f"the CSV header has {problem}", location=where)
        seen.add(name)
    return record
