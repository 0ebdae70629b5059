"""``orchestrator demo``: the example labeling job, end to end, with no key and no spend.

Starts the simulator in-process on loopback, runs ``jobs/review-labels`` (answers
as typed columns, ``[output]``) into a local SQLite file with the same code path
as ``orchestrator run``, and prints a summary, a few typed answers beside their
input columns, and a SQL query to paste.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rich.console import Console
from rich.table import Table

from orchestrator.progress import JobProgress, print_summary
from orchestrator.resources import jobs_dir
from orchestrator.runner import drive, step_context
from orchestrator.settings import load_settings
from orchestrator.simulator import SimulatorConfig, SimulatorServer
from orchestrator.steps.context import utcnow
from orchestrator.steps.jobs import submit_spec
from orchestrator.store.bootstrap import create_if_new
from orchestrator.store.engine import make_engine, upgrade

#: jobs/ of the repository, shipped in the package as orchestrator.jobs.
DEMO_SPEC = jobs_dir() / "review-labels" / "spec.toml"
#: The typed answers shown after the run (columns of the job's view).
SHOWN = ("key", "product", "sentiment", "confidence", "topics", "would_recommend", "attempts")
DEMO_KEY = "sk-demo-simulator"  # the simulator accepts any key; nothing leaves loopback


def run_demo(console: Console, db: Path, processing_seconds: float) -> None:
    url = f"sqlite:///{db.resolve()}"
    if create_if_new(url) is None:  # a demo store made before: brought to the head
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
    config = SimulatorConfig(
        processing_seconds=processing_seconds,
        errored_share={"invalid_request_error": 0.01, "overloaded_error": 0.02},
        expired_share=0.01,
        invalid_output_share=0.03,
    )
    with SimulatorServer(config) as sim:
        console.print(f"simulator on {sim.base_url} (no API key, no network, no spend)")
        settings = load_settings(
            api_key=DEMO_KEY, base_url=sim.base_url, database_url=url, poll_interval_s=0.5
        )
        with step_context(settings) as ctx:
            job, created = submit_spec(ctx.store, DEMO_SPEC, utcnow(), ctx.prices)
            state = "recorded" if created else "resumed"
            console.print(f"job [bold]{job.name}[/] {state}: {job.items_total:,} reviews to label")
            with JobProgress(console, job.items_total) as progress:
                report = drive(ctx, job.id, progress.update)
    print_summary(console, report, url)
    view = job.view_name or "final_results"
    _show_answers(console, db, view)
    query = f"SELECT sentiment, count(*), round(avg(confidence), 2) FROM {view} GROUP BY 1"
    console.print(f'\nTry: sqlite3 {db} "{query}"', highlight=False)


def _show_answers(console: Console, db: Path, view: str) -> None:
    """The first answers, typed, beside their input columns (read from the job's view)."""
    conn = sqlite3.connect(db)
    try:
        cursor = conn.execute(
            f"SELECT {', '.join(SHOWN)} FROM {view} WHERE status = 'succeeded' LIMIT 5"
        )
        rows = cursor.fetchall()
    finally:
        conn.close()
    console.print()
    table = Table(title=f"typed answers ({view})", title_justify="left")
    for name in SHOWN:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(str(value) for value in row))
    console.print(table)
