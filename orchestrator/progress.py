"""Rendering a job's progress and summary with rich."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.domain.states import SENT_BATCH_STATUSES, ItemStatus
from orchestrator.store.records import JobReport

#: Terminal states first: they are what the user came for.
_SUMMARY_ORDER = (
    ItemStatus.SUCCEEDED,
    ItemStatus.FAILED,
    ItemStatus.CANCELED,
    ItemStatus.QUEUED,
    ItemStatus.PENDING,
)
SAMPLE_QUERY = """SELECT result_type, text, count(*) AS items, round(sum(cost_usd), 4) AS usd
FROM final_results WHERE job_name = '{job}'
GROUP BY result_type, text ORDER BY items DESC;"""


class JobProgress:
    """Bars for items sent, items finished and results ingested, plus batches and cost."""

    def __init__(self, console: Console, total: int) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._sent = self._progress.add_task("items sent", total=total, extra="")
        self._ingested = self._progress.add_task("results ingested", total=total, extra="")
        self._done = self._progress.add_task("items finished", total=total, extra="")

    def __enter__(self) -> JobProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, report: JobReport) -> None:
        items = report.items
        total = report.job.items_total
        waiting = items.get(ItemStatus.PENDING, 0)
        in_flight = report.count_batches(SENT_BATCH_STATUSES)
        self._progress.update(
            self._sent, completed=total - waiting, extra=f"{in_flight} batches in flight"
        )
        self._progress.update(
            self._ingested, completed=min(total, sum(report.results.values())), extra=""
        )
        self._progress.update(
            self._done, completed=report.terminal, extra=f"${report.cost_usd:.4f} so far"
        )


def print_summary(console: Console, report: JobReport, database_url: str) -> None:
    job = report.job
    table = Table(title=f"job {job.name} (id {job.id}): {job.status.value}", show_header=False)
    table.add_row("items", f"{job.items_total:,}")
    for status in _SUMMARY_ORDER:
        if report.items.get(status):
            table.add_row(f"  {status}", f"{report.items[status]:,}")
    table.add_row("items retried", f"{report.retried_items:,}")
    table.add_row("batches", ", ".join(f"{k} {v}" for k, v in sorted(report.batches.items())))
    table.add_row(
        "results stored", ", ".join(f"{k} {v}" for k, v in sorted(report.results.items()))
    )
    table.add_row("tokens in / out", f"{report.input_tokens:,} / {report.output_tokens:,}")
    table.add_row("cost (batch prices)", f"${report.cost_usd:.4f}")
    if job.cache_hits:
        table.add_row(
            "answered from cache", f"{job.cache_hits:,} items, saved ${job.cache_saved_usd:.4f}"
        )
    if report.quarantined:
        table.add_row("quarantined lines", f"{report.quarantined:,} (table quarantine)")
    console.print(table)
    console.print(f"\nQuery the answers ({database_url}):")
    console.print(SAMPLE_QUERY.format(job=job.name), markup=False, highlight=False)
