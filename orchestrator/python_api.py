"""The Python API: run a job from a notebook or a pipeline, rows in, typed results out.

``Orchestrator`` holds the settings (from the environment, as the CLI, with keyword
overrides) and the store; ``Orchestrator.submit`` records a job from rows (dicts,
a pandas or polars DataFrame, an Arrow table), a spec file or a spec dict; ``Job``
drives it (``until_done``, the loop of ``orchestrator run``), watches it (``watch``,
observing what a daemon drives), and returns its answers (``results``,
``to_arrow``, ``to_pandas``, ``to_polars``). The same steps, store and guarantees
as the CLI: nothing here talks to the API except through the steps.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel

from orchestrator import export
from orchestrator.domain.output import columns
from orchestrator.domain.pricing import PriceTable
from orchestrator.domain.spec import LoadedSpec, load_spec, load_spec_data
from orchestrator.errors import ConfigError, UsageError
from orchestrator.events import Ended, Event, EventTracker, JobEventHandler
from orchestrator.runner import cycles, settled, step_context
from orchestrator.settings import Settings, load_settings
from orchestrator.steps.context import utcnow
from orchestrator.steps.jobs import resolve_job, submit_loaded
from orchestrator.store.bootstrap import create_if_new
from orchestrator.store.queries import Store
from orchestrator.store.records import JobRecord, JobReport

T = TypeVar("T", bound=BaseModel)

#: Rows written per call while a dataset is spooled to disk for recording.
SPOOL_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class Result(Generic[T]):
    """One item's final result. ``output`` is the answer as the ``output`` model given
    to ``submit`` (or a dict, for a schema given as a dict), None without one."""

    key: str
    status: str
    attempts: int
    input: dict[str, Any] | None
    output: T | dict[str, Any] | None
    text: str | None
    result_type: str | None
    error_type: str | None
    error_message: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    custom_id: str | None


class Orchestrator:
    """Settings and a store: where jobs are recorded and from which they are driven.

    ``Orchestrator()`` reads ``ANTHROPIC_*`` / ``ORCHESTRATOR_*`` like the CLI;
    keyword arguments (``database_url``, ``api_key``, ``base_url`` and any other
    setting's field name) override them. A new SQLite store is created on first use.
    """

    def __init__(self, **overrides: Any) -> None:
        self.settings: Settings = load_settings(**overrides)
        create_if_new(self.settings.database_url)
        self.store = Store.open(self.settings.database_url)
        self.prices = PriceTable.load()  # the model table the CLI checks against

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def submit(
        self,
        spec: str | Path | Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        rows: Any = None,
        request: Mapping[str, Any] | None = None,
        output: type[BaseModel] | Mapping[str, Any] | None = None,
        key: str = "id",
        **fields: Any,
    ) -> Job[Any]:
        """Record a job, or find it again when the same name, spec and rows were
        recorded before (nothing is sent twice); a different job under a used name is
        refused (``JobConflictError``).

        Give ``spec`` (a TOML file, or a spec as a dict), or ``name`` + ``rows`` +
        ``request`` (+ ``output``, a pydantic model or a JSON Schema dict; + ``key``,
        the row field that identifies an item; + any other spec field, e.g.
        ``retry={"max_attempts": 2}``, ``output_mode="tool"``).
        """
        model = output if isinstance(output, type) else None
        with ExitStack() as stack:
            if isinstance(spec, (str, Path)):
                loaded = load_spec(Path(spec))
            else:
                data = dict(spec or {})
                spooled = None
                if rows is not None:
                    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                    data.update(_rows_spec(name, rows, request, output, key, fields, folder))
                    spooled = folder / "rows.jsonl"
                elif spec is None:
                    raise UsageError("give a spec (a file or a dict), or name, rows and request")
                loaded = _loaded(data, name, spooled)
            record, _ = submit_loaded(
                self.store,
                loaded,
                utcnow(),
                self.prices,
                api_version=self.settings.api_version,
            )
        return Job(self, record, model)

    def job(self, ref: str | int, output: type[BaseModel] | None = None) -> Job[Any]:
        """A job recorded earlier (by name, or id), by this API, the CLI or a daemon."""
        return Job(self, resolve_job(self.store, str(ref)), output)

    def jobs(self) -> list[JobRecord]:
        return self.store.list_jobs()


class Job(Generic[T]):
    """A recorded job: drive it, watch it, read its answers."""

    def __init__(self, orch: Orchestrator, record: JobRecord, model: type[T] | None) -> None:
        self._orch = orch
        self.record = record
        self.model = model

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    def report(self) -> JobReport:
        """The job's counts now (items by state, batches, tokens, cost, failures)."""
        return self._orch.store.job_report(self.id)

    # -- driving and watching --------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        """Drive the job in this process (like ``orchestrator run``) and yield what
        happens, until it is done; the last event is ``Ended``."""
        with step_context(self._orch.settings) as ctx:
            yield from self._observe(cycles(ctx, self.id), ctx.store)

    def until_done(self, handler: JobEventHandler | None = None) -> JobReport:
        """Drive the job until it is done, telling ``handler``; returns the final report.
        Interrupted (Ctrl-C, a crash), it resumes where it was when called again."""
        return self._run(self.events(), handler or JobEventHandler())

    def watch_events(self, poll_s: float | None = None) -> Iterator[Event]:
        """Yield what happens to the job while somebody else drives it (a daemon)."""
        interval = self._orch.settings.poll_interval_s if poll_s is None else poll_s
        yield from self._observe(self._reports(interval), self._orch.store)

    def watch(
        self, handler: JobEventHandler | None = None, poll_s: float | None = None
    ) -> JobReport:
        """Observe the job until it is over, without driving it."""
        return self._run(self.watch_events(poll_s), handler or JobEventHandler())

    async def wait(self, handler: JobEventHandler | None = None) -> JobReport:
        """``until_done`` for asyncio apps (the loop runs in a worker thread)."""
        return await asyncio.to_thread(self.until_done, handler)

    async def events_async(self) -> AsyncIterator[Event]:
        """``events`` for asyncio apps."""
        stream = self.events()
        while (event := await asyncio.to_thread(_next_or_none, stream)) is not None:
            yield event

    def cancel(self) -> int:
        """Cancel the job: nothing new is sent; running batches are canceled by the
        next cycle of whoever drives it. Returns how many batches will be canceled."""
        return self._orch.store.cancel_job(self.id, utcnow())

    def _reports(self, poll_s: float) -> Iterator[JobReport]:
        while True:
            report = self.report()
            yield report
            if settled(report):
                return
            time.sleep(poll_s)

    def _observe(self, reports: Iterable[JobReport], store: Store) -> Iterator[Event]:
        tracker = EventTracker(store, self.id)
        report: JobReport | None = None
        for report in reports:
            yield from tracker.events(report, utcnow())
        assert report is not None
        self.record = report.job
        if settled(report):
            yield Ended(report)

    @staticmethod
    def _run(events: Iterator[Event], handler: JobEventHandler) -> JobReport:
        last: JobReport | None = None
        try:
            for event in events:
                handler.dispatch(event)
                last = getattr(event, "report", last)
        except BaseException as exc:
            handler.on_exception(exc)
            raise
        assert last is not None
        return last

    # -- answers ------------------------------------------------------------------------------

    def results(self) -> Iterator[Result[T]]:
        """Every item's final result, in input order (streamed)."""
        for row in self._orch.store.final_results(self.id):
            output = export.stored_object(row, "output")
            typed: T | dict[str, Any] | None = output
            if self.model is not None and output is not None:
                typed = self.model.model_validate(output)
            yield Result(
                key=row["key"],
                status=row["status"],
                attempts=int(row["attempts"]),
                input=export.stored_object(row, "input"),
                output=typed,
                text=row.get("text"),
                result_type=row.get("result_type"),
                error_type=row.get("error_type"),
                error_message=row.get("error_message"),
                input_tokens=row.get("input_tokens"),
                output_tokens=row.get("output_tokens"),
                cost_usd=row.get("cost_usd"),
                custom_id=row.get("custom_id"),
            )

    def to_arrow(self) -> Any:
        """A ``pyarrow.Table``: the export's columns (key, status, one typed column per
        output property, the input columns, the result fields). Needs the ``parquet``
        extra."""
        record = self._orch.store.get_job(self.id)
        layout = columns(record.output, record.input_columns)
        return export.arrow_table(self._orch.store.final_results(self.id), layout)

    def to_pandas(self) -> Any:
        """``to_arrow`` as a pandas DataFrame. Needs the ``pandas`` extra."""
        _need("pandas", "pandas")
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        """``to_arrow`` as a polars DataFrame. Needs the ``polars`` extra."""
        polars = _need("polars", "polars")
        return polars.from_arrow(self.to_arrow())


def _next_or_none(stream: Iterator[Event]) -> Event | None:
    return next(stream, None)


def _need(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(
            f"this needs {module}: pip install 'batch-orchestrator[{extra}]'"
        ) from None


def _loaded(data: dict[str, Any], name: str | None, spooled: Path | None) -> LoadedSpec:
    """A spec given as data; relative paths in it are relative to the working directory.
    Rows spooled to a temporary file are hashed by content, not by where they were put,
    so submitting the same rows again finds the same job."""
    if name is not None:
        data["name"] = name
    hashed = data if spooled is None else {**data, "input": spooled.name}
    text = orjson.dumps(hashed, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return load_spec_data(data, Path(f"<python:{data.get('name', 'job')}>"), text)


def _rows_spec(
    name: str | None,
    rows: Any,
    request: Mapping[str, Any] | None,
    output: type[BaseModel] | Mapping[str, Any] | None,
    key: str,
    fields: dict[str, Any],
    folder: Path,
) -> dict[str, Any]:
    """The spec fields of a job over in-memory rows, spooled to ``folder``/rows.jsonl."""
    if name is None or request is None:
        raise UsageError("a job from rows needs name= and request= (and key=, default 'id')")
    data_file = folder / "rows.jsonl"
    with data_file.open("wb") as out:
        for row in iter_rows(rows):
            line = orjson.dumps(
                row, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS, default=str
            )
            out.write(line + b"\n")
    spec: dict[str, Any] = {"input": str(data_file), "key": key, "request": dict(request)}
    mode = fields.pop("output_mode", None)
    if output is not None:
        schema = output.model_json_schema() if isinstance(output, type) else dict(output)
        spec["output"] = {"schema": schema, **({"mode": mode} if mode else {})}
    spec.update(fields)
    return spec


def iter_rows(rows: Any) -> Iterator[dict[str, Any]]:
    """Dicts from an iterable of mappings, a pandas or polars DataFrame, or an Arrow
    table (or record batch), streamed where the library allows it."""
    kind = type(rows).__module__.split(".")[0]
    if kind == "pandas":
        for chunk_start in range(0, len(rows), SPOOL_ROWS):
            yield from rows.iloc[chunk_start : chunk_start + SPOOL_ROWS].to_dict("records")
    elif kind == "polars":
        yield from rows.iter_rows(named=True)
    elif kind == "pyarrow":
        batches = rows.to_batches() if hasattr(rows, "to_batches") else [rows]
        for batch in batches:
            yield from batch.to_pylist()
    else:
        for n, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise UsageError(f"rows[{n}] is a {type(row).__name__}, not a dict")
            yield dict(row)


__all__ = ["Job", "Orchestrator", "Result", "iter_rows"]
