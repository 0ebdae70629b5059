"""The ``orchestrator`` command line: thin; parses, calls the steps, renders.

Every error the orchestrator raises on purpose is printed as one line naming
what to fix (exit 2 for bad input or configuration, 1 otherwise); anything else
is a bug and shows its traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from orchestrator import export as exporter
from orchestrator.domain.pricing import PriceTable
from orchestrator.domain.states import ItemStatus
from orchestrator.errors import ConfigError, OrchestratorError, SpecError, StoreError
from orchestrator.progress import JobProgress, print_summary
from orchestrator.runner import drive, make_client, open_store, step_context
from orchestrator.settings import Settings, load_settings
from orchestrator.steps.context import utcnow
from orchestrator.steps.jobs import resolve_job, submit_spec
from orchestrator.store import engine as store_engine

app = typer.Typer(
    help="Run bulk Claude work through the Message Batches API, with every answer in SQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The job store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()
err_console = Console(stderr=True)

SpecArg = Annotated[Path, typer.Argument(help="The job spec (TOML).", show_default=False)]
JobArg = Annotated[str, typer.Argument(help="A job id or name.", show_default=False)]


def _settings() -> Settings:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return settings


@app.command()
def run(spec: SpecArg) -> None:
    """Submit the job and drive it to completion in the foreground.

    Running it again after a crash or Ctrl-C resumes the same job.
    """
    settings = _settings()
    logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    with step_context(settings) as ctx:
        job, created = submit_spec(
            ctx.store, spec, utcnow(), ctx.prices, api_version=settings.api_version
        )
        verb = "recorded" if created else "resuming"
        console.print(f"job [bold]{job.name}[/] (id {job.id}) {verb}: {job.items_total:,} items")
        try:
            with JobProgress(console, job.items_total) as progress:
                report = drive(ctx, job.id, progress.update)
        except KeyboardInterrupt:
            err_console.print("stopped: run the same command again to resume this job")
            raise typer.Exit(130) from None
    print_summary(console, report, settings.database_url)


@app.command()
def submit(spec: SpecArg) -> None:
    """Record the job (items and plan) and print its id; the daemon does the rest."""
    settings = _settings()
    with open_store(settings) as store:
        job, created = submit_spec(
            store, spec, utcnow(), PriceTable.load(), api_version=settings.api_version
        )
    state = "submitted" if created else "already submitted"
    console.print(f"{job.id}\t{job.name}\t{state}\t{job.items_total} items")


@app.command()
def daemon(
    spec: Annotated[
        list[Path] | None,
        typer.Option("--spec", help="A spec with a cron `schedule` to run (repeatable)."),
    ] = None,
) -> None:
    """The scheduled daemon: all steps for all jobs, plus cron-scheduled specs."""
    from orchestrator.daemon import run_daemon

    settings = _settings()
    with step_context(settings) as ctx:
        run_daemon(ctx, list(spec or []))


@app.command()
def status(job: Annotated[str | None, typer.Argument(help="A job id or name.")] = None) -> None:
    """Jobs, batches, counts and cost so far."""
    settings = _settings()
    with open_store(settings) as store:
        if job is not None:
            print_summary(
                console, store.job_report(resolve_job(store, job).id), settings.database_url
            )
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
    """Cancel a job: nothing new is sent, in-flight batches are canceled, retries stop."""
    settings = _settings()
    with open_store(settings) as store:
        record = resolve_job(store, job)
        flagged = store.cancel_job(record.id, utcnow())
    console.print(
        f"job {record.name} canceled; {flagged} in-flight batch(es) will be canceled on the API "
        "by the next `run` or daemon cycle"
    )


@app.command()
def export(
    job: JobArg,
    fmt: Annotated[
        exporter.Format, typer.Option("--format", "-f", help="Output format.")
    ] = exporter.Format.JSONL,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")] = Path(
        "results.jsonl"
    ),
) -> None:
    """One row per item with its final result (JSONL, CSV or Parquet)."""
    settings = _settings()
    with open_store(settings) as store:
        record = resolve_job(store, job)
        rows = exporter.write(store.final_results(record.id), fmt, output)
    console.print(f"wrote {rows:,} rows to {output}")


@app.command()
def batches(
    limit: Annotated[int, typer.Option(help="How many remote batches to list.")] = 50,
) -> None:
    """The remote list of batches (newest first), marking which ones this store owns."""
    settings = _settings()
    with open_store(settings) as store, make_client(settings) as api:
        owned = store.owned_remote_ids()
        table = Table("remote id", "status", "created", "requests", "owned by job")
        for index, remote in enumerate(api.iter_batches(limit=min(limit, 1000))):
            if index >= limit:
                break
            job_id = owned.get(remote.id)
            table.add_row(
                remote.id,
                remote.processing_status,
                remote.created_at.isoformat(),
                str(remote.request_counts.total),
                str(job_id) if job_id else "-",
            )
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


def main() -> None:
    """Entry point: run the app, turning deliberate errors into one-line messages."""
    try:
        app()
    except (SpecError, ConfigError) as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except (StoreError, OrchestratorError) as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)


__all__ = ["app", "main"]
