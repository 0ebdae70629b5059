"""The ``orchestrator`` command line: thin; parses, calls the steps, renders.

Every error the orchestrator raises on purpose is printed as one line naming
what to fix; anything else is a bug and shows its traceback. Exit codes
(:class:`ExitCode`) are part of the contract and documented in the README.
"""

from __future__ import annotations

import gc
import sys
import warnings
from collections.abc import Mapping
from enum import IntEnum
from importlib.metadata import PackageNotFoundError, version
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from orchestrator import export as exporter
from orchestrator.api.client import BatchesClient
from orchestrator.domain.output import columns
from orchestrator.domain.pricing import PriceTable
from orchestrator.domain.spec import LoadedSpec, load_spec
from orchestrator.domain.states import ItemStatus, JobStatus
from orchestrator.errors import (
    BudgetExceededError,
    ConfigError,
    OrchestratorError,
    SpecError,
    UsageError,
)
from orchestrator.estimate import DEFAULT_SAMPLE, CostEstimate, CountTokens, EstimateTally
from orchestrator.estimate import estimate as estimate_job
from orchestrator.logs import configure_logging
from orchestrator.progress import JobProgress, print_estimate, print_summary
from orchestrator.runner import StopSignals, drive, make_client, open_store, step_context
from orchestrator.settings import Settings, load_settings
from orchestrator.steps.context import StepContext, log, utcnow
from orchestrator.steps.jobs import resolve_job, submit_loaded, submit_spec
from orchestrator.steps.poll import cancel_now
from orchestrator.steps.waiting import waiting_reason
from orchestrator.store import bootstrap
from orchestrator.store import engine as store_engine
from orchestrator.store.jobs import PlanAtRecord
from orchestrator.store.records import JobRecord, JobReport


class ExitCode(IntEnum):
    """What ``orchestrator`` returns; scripts may rely on these."""

    OK = 0  #: Done; for ``run``: every item succeeded.
    ERROR = 1  #: Could not proceed (API refused, store unavailable, API unreachable...).
    USAGE = 2  #: Bad input or configuration: a spec, a setting, an option.
    NOT_ALL_SUCCEEDED = 3  #: ``run``: the job ended, but some items failed or were canceled.
    INTERRUPTED = 130  #: Ctrl-C: run the same command again to resume.


app = typer.Typer(
    help="Run bulk Claude work through the Message Batches API, with every answer in SQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The job store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

SpecArg = Annotated[Path, typer.Argument(help="The job spec (TOML).", show_default=False)]
JobArg = Annotated[str, typer.Argument(help="A job name (or id).", show_default=False)]


def _version() -> str:
    try:
        return version("batch-orchestrator")
    except PackageNotFoundError:  # imported from a checkout that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        console.print(f"orchestrator {_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Run bulk Claude work through the Message Batches API, with every answer in SQL."""


def _settings(default_level: str = "WARNING", on: Console = err_console) -> Settings:
    settings = load_settings()
    configure_logging(on, settings.log_level, default_level)
    return settings


def _new_store(settings: Settings) -> None:
    """First run on SQLite: create the store at head, and say so in one line."""
    revision = bootstrap.create_if_new(settings.database_url)
    if revision is not None:
        where = store_engine.mask_url(settings.database_url)
        err_console.print(f"created the job store {where} (schema {revision})", highlight=False)


SampleOpt = Annotated[
    int,
    typer.Option(
        "--sample",
        min=1,
        help="Requests counted with the count-tokens endpoint (every one when fewer).",
    ),
]


@app.command()
def estimate(spec: SpecArg, sample: SampleOpt = DEFAULT_SAMPLE) -> None:
    """Validate and plan the whole job and show its size and cost range; nothing is
    sent or recorded. Without ANTHROPIC_API_KEY the tokens are approximated offline."""
    settings = _settings()
    loaded = load_spec(spec)
    found = _estimate(settings, loaded, sample)
    print_estimate(console, loaded.spec.name, found, loaded.spec.budget_usd)


def _estimate(settings: Settings, loaded: LoadedSpec, sample: int) -> CostEstimate:
    version = loaded.spec.api_version or settings.api_version
    prices = PriceTable.load()
    if not _has_key(settings):
        return estimate_job(
            loaded, prices=prices, api_version=version, count_tokens=None, sample=sample
        )
    with make_client(settings) as api:
        return estimate_job(
            loaded,
            prices=prices,
            api_version=version,
            count_tokens=_token_counter(settings, loaded, api),
            sample=sample,
        )


def _has_key(settings: Settings) -> bool:
    return settings.api_key is not None and bool(settings.api_key.get_secret_value().strip())


def _token_counter(
    settings: Settings, loaded: LoadedSpec, api: BatchesClient
) -> CountTokens | None:
    """Count one request's input tokens with the API (None offline: no key)."""
    if not _has_key(settings):
        return None
    version = loaded.spec.api_version or settings.api_version
    betas = tuple(loaded.spec.betas)

    def count(params: Mapping[str, Any]) -> int:
        return api.count_tokens(params, betas=betas, api_version=version)

    return count


@app.command()
def run(
    spec: SpecArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the estimate and stop: nothing is sent.")
    ] = False,
    sample: SampleOpt = DEFAULT_SAMPLE,
) -> None:
    """Submit the job and drive it to completion in the foreground (this job only).

    A new job's estimate is shown (and checked against budget_usd) before anything is
    sent. Exit 0 when every item succeeded, 3 when the job ended with failed or
    canceled items. Running it again after a crash or Ctrl-C resumes the same job.
    """
    settings = _settings(on=console)
    loaded = load_spec(spec)  # a spec that can't be read is refused before anything is created
    if dry_run:
        found = _estimate(settings, loaded, sample)
        print_estimate(console, loaded.spec.name, found, loaded.spec.budget_usd)
        return
    _new_store(settings)
    with step_context(settings) as ctx:
        plan = PlanAtRecord(ctx.store.store_tag())
        job, created = _record(ctx, loaded, sample, plan)
        verb = "recorded" if created else "resuming"
        console.print(f"job [bold]{job.name}[/] (id {job.id}) {verb}: {job.items_total:,} items")
        for batch_id, requests in plan.planned:
            log.info("job %s: planned batch %s with %s requests", job.id, batch_id, requests)
        with StopSignals(_say_stopping) as stop:
            with JobProgress(console, job.items_total) as progress:
                report = drive(
                    ctx,
                    job.id,
                    progress.update,
                    on_waiting=progress.waiting,
                    should_stop=stop.stop.is_set,
                )
    if stop.stop.is_set() and report.job.status is JobStatus.ACTIVE:
        err_console.print("stopped: run the same command again to resume this job")
        raise typer.Exit(ExitCode.INTERRUPTED)
    print_summary(console, report, store_engine.mask_url(settings.database_url))
    raise typer.Exit(_run_exit_code(report))


def _record(
    ctx: StepContext, loaded: LoadedSpec, sample: int, plan: PlanAtRecord
) -> tuple[JobRecord, bool]:
    """Record the job (or find it again: a run to resume), showing a new job's
    estimate from the same read of its rows. A new job's first batch is planned as it
    is recorded (``plan``): ``run`` sends it at once.

    With ``budget_usd`` the estimate (its sample counted with the count-tokens
    endpoint) is made and checked inside the job's transaction, so a job over budget
    is rolled back: nothing recorded, nothing sent. Without one, it is made once the
    job is committed, so the write lock is never held waiting for the count-tokens
    calls. Either way it is shown before anything is sent, and the sample is counted
    from the moment the last row is read (``EstimateTally.sampled``), while the rows
    are still being stored: the counts are mostly in by the time they are asked for.
    """
    settings, spec = ctx.settings, loaded.spec
    count = _token_counter(settings, loaded, ctx.api)
    tally = EstimateTally(loaded, sample=sample, count_ahead=count)

    def show_estimate() -> CostEstimate:
        found = tally.finish(prices=ctx.prices, count_tokens=count)
        print_estimate(console, spec.name, found, spec.budget_usd)
        return found

    def within_budget() -> None:
        found = show_estimate()
        if spec.budget_usd is not None and found.usd_high > spec.budget_usd:
            raise BudgetExceededError(
                f"{loaded.path}: budget_usd is {spec.budget_usd:.2f} but the estimate is up to "
                f"{found.usd_high:.2f} USD; raise budget_usd or lower max_tokens (nothing sent)"
            )

    try:
        job, created = submit_loaded(
            ctx.store,
            loaded,
            utcnow(),
            ctx.prices,
            api_version=settings.api_version,
            tally=tally,
            before_commit=within_budget if spec.budget_usd is not None else None,
            plan=plan,
        )
    except BaseException:
        tally.cancel()  # nothing recorded (or Ctrl-C): no more count-tokens calls
        raise
    if created and spec.budget_usd is None:
        show_estimate()
    return job, created


def _say_stopping(_signum: int) -> None:
    err_console.print("stopping after the current step (a second signal exits at once)...")


def _run_exit_code(report: JobReport) -> ExitCode:
    if report.items.get(ItemStatus.SUCCEEDED, 0) == report.job.items_total:
        return ExitCode.OK
    return ExitCode.NOT_ALL_SUCCEEDED


@app.command()
def submit(spec: SpecArg) -> None:
    """Record the job (items and plan) and print its id; the daemon does the rest."""
    settings = _settings()
    load_spec(spec)  # a spec that can't be read is refused before anything is created
    _new_store(settings)
    with open_store(settings) as store:
        job, created = submit_spec(
            store, spec, utcnow(), PriceTable.load(), api_version=settings.api_version
        )
    state = "submitted" if created else "already submitted"
    console.print(f"{job.id}\t{job.name}\t{state}\t{job.items_total} items", highlight=False)


@app.command()
def daemon(
    spec: Annotated[
        list[Path] | None,
        typer.Option("--spec", help="A spec with a cron `schedule` to run (repeatable)."),
    ] = None,
) -> None:
    """The scheduled daemon: all steps for all jobs, plus cron-scheduled specs."""
    from orchestrator.daemon import run_daemon

    settings = _settings(default_level="INFO")
    _new_store(settings)
    with step_context(settings) as ctx:
        run_daemon(ctx, list(spec or []))


@app.command()
def status(job: Annotated[str | None, typer.Argument(help="A job name (or id).")] = None) -> None:
    """Jobs, batches, counts and cost so far; with a job, why it waits, if it does."""
    settings = _settings()
    with open_store(settings) as store:
        if job is not None:
            record = resolve_job(store, job)
            reason = waiting_reason(store, settings, record.id, utcnow())
            report = store.job_report(record.id)
            print_summary(console, report, store_engine.mask_url(settings.database_url), reason)
            return
        shown = (ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.CANCELED)
        table = Table("id", "name", "status", "items", *shown, "open", "batches", "cost (USD)")
        for record in store.list_jobs():
            rep = store.job_report(record.id)
            table.add_row(
                str(record.id),
                record.name,
                record.status.value,
                f"{record.items_total:,}",
                *(f"{rep.items.get(s, 0):,}" for s in shown),
                f"{record.items_total - rep.terminal:,}",
                str(sum(rep.batches.values())),
                f"{rep.cost_usd:.4f}",
            )
        console.print(table)


@app.command()
def cancel(job: JobArg) -> None:
    """Cancel a job: nothing new is sent, running batches are canceled, retries stop."""
    settings = _settings()
    with open_store(settings) as store:
        record = resolve_job(store, job)
        if record.status is not JobStatus.ACTIVE:
            console.print(f"job {record.name} is {record.status.value}: nothing to cancel")
            return
        flagged = store.cancel_job(record.id, utcnow())
    if not flagged:
        console.print(f"job {record.name} canceled; no batch was in flight")
        return
    if settings.api_key is None:
        console.print(
            f"job {record.name} canceled; {flagged} batch(es) in flight will be canceled on the "
            "API by the next `run` or daemon cycle (no ANTHROPIC_API_KEY here to do it now)"
        )
        return
    with step_context(settings) as ctx:
        sent = cancel_now(ctx, record.id, utcnow())
    later = f"; {flagged - sent} more once their creates settle" if flagged > sent else ""
    console.print(f"job {record.name} canceled; {sent} batch(es) canceling on the API now{later}")


@app.command()
def export(
    job: JobArg,
    fmt: Annotated[
        exporter.Format, typer.Option("--format", "-f", help="Output format.")
    ] = exporter.Format.JSONL,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default: <job>.<format>)."),
    ] = None,
    partial: Annotated[
        bool, typer.Option("--partial", help="Export a job that is not finished yet.")
    ] = False,
) -> None:
    """One row per item with its final result (JSONL, CSV or Parquet)."""
    settings = _settings()
    with open_store(settings) as store:
        record = resolve_job(store, job)
        if record.status is JobStatus.ACTIVE and not partial:
            done = store.job_report(record.id).terminal
            raise UsageError(
                f"job {record.name} is still running ({done:,} of {record.items_total:,} items "
                "finished); wait for it, or pass --partial to export what is there"
            )
        target = output or exporter.default_path(record.name, fmt)
        layout = columns(record.output, record.input_columns)
        rows = exporter.write(store.final_results(record.id), fmt, target, layout)
    console.print(f"wrote {rows:,} rows to {target}", highlight=False)


@app.command()
def batches(
    limit: Annotated[int, typer.Option(help="How many remote batches to list.")] = 50,
) -> None:
    """The remote list of batches (newest first), marking which ones this store owns.

    Piped, it prints tab-separated lines with whole ids.
    """
    settings = _settings()
    with open_store(settings) as store, make_client(settings) as api:
        owned = store.owned_remote_ids()
        header = ("remote id", "status", "created", "requests", "owned by job")
        rows = [
            (
                remote.id,
                remote.processing_status,
                remote.created_at.isoformat(),
                str(remote.request_counts.total),
                str(owned[remote.id]) if remote.id in owned else "-",
            )
            for remote in islice(api.iter_batches(limit=min(limit, 1000)), limit)
        ]
    if not console.is_terminal:
        for row in rows:
            print("\t".join(row))  # noqa: T201 - plain lines for pipes, never cut
        return
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    console.print(table)


@app.command()
def demo(
    db: Annotated[Path, typer.Option(help="SQLite file to write.")] = Path("demo.db"),
    processing_seconds: Annotated[
        float, typer.Option(help="Simulated processing time per batch.")
    ] = 3.0,
) -> None:
    """Run the example labeling job end to end against the embedded simulator."""
    from orchestrator.demo import run_demo

    _settings(on=console)
    run_demo(console, db, processing_seconds)


@app.command()
def healthcheck() -> None:
    """Exit 0 when the store is reachable and its schema is at the head revision."""
    settings = _settings()
    engine = store_engine.make_engine(settings.database_url)
    try:
        store_engine.require_head(engine)
        console.print(f"ok: {store_engine.safe_url(engine)} at {store_engine.head_revision()}")
    finally:
        engine.dispose()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the job store's tables to the current version."""
    settings = _settings()
    engine = store_engine.make_engine(settings.database_url)
    try:
        before = store_engine.current_revision(engine)
        store_engine.upgrade(engine)
        after = store_engine.current_revision(engine)
        console.print(f"{store_engine.safe_url(engine)}: {before or 'empty'} -> {after}")
    finally:
        engine.dispose()


def _register_simulate() -> None:
    from orchestrator.simulator.command import simulate

    app.command("simulate", help="Serve the Message Batches API simulator on loopback.")(simulate)


_register_simulate()


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Warnings (e.g. a deprecated model) as one ``warning: ...`` line, not a source line."""
    del category, filename, lineno, file, line
    err_console.print(f"warning: {message}", markup=False, highlight=False)


def main() -> None:
    """Entry point: run the app, turning deliberate errors into one-line messages."""
    warnings.showwarning = _show_warning
    # What is imported by now (SQLAlchemy's, pydantic's and the models' hundreds of
    # thousands of objects) lives until the process ends: out of the cycle collector's
    # sight, every full collection a command's rows set off doesn't walk them all again
    # (100,000 items: recording 3.0 -> 2.3 s; reading a batch's routes 0.18 -> 0.07 s).
    gc.freeze()
    try:
        app()
    except (SpecError, ConfigError, UsageError) as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(ExitCode.USAGE)
    except (OrchestratorError, exporter.ExportError) as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(ExitCode.ERROR)
    finally:
        # The process ends here. At exit the interpreter would sweep the whole heap for
        # cycles: 0.25 s of every command, spent only to free memory the OS takes back
        # anyway. Frozen objects are left out of that sweep. Every store, client and
        # file is closed by now.
        gc.freeze()


__all__ = ["ExitCode", "app", "main"]
