"""Rendering a job's progress and summary with rich.

Every figure on the bars only grows: "requests sent" counts requests in batches
the API accepted (a retry adds to the total), "results stored" counts result
rows, "items finished" counts items with their final answer or failure.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from orchestrator.domain.states import SENT_BATCH_STATUSES, ItemStatus
from orchestrator.estimate import CostEstimate
from orchestrator.store.records import JobRecord, JobReport

#: Terminal states first: they are what the user came for.
_SUMMARY_ORDER = (
    ItemStatus.SUCCEEDED,
    ItemStatus.FAILED,
    ItemStatus.CANCELED,
    ItemStatus.QUEUED,
    ItemStatus.PENDING,
)
#: Characters of an example error message shown per failure group.
EXAMPLE_CHARS = 160
SAMPLE_QUERY = """SELECT result_type, text, count(*) AS items,
       round(CAST(sum(cost_usd) AS NUMERIC), 4) AS usd
FROM final_results WHERE job_name = '{job}'
GROUP BY result_type, text ORDER BY items DESC;"""
#: A job with ``[output]``: its answers are typed columns of its own view.
VIEW_QUERY = """SELECT key, status, {columns}
FROM {view} LIMIT 10;"""


class JobProgress:
    """Bars for requests sent, results stored and items finished, plus failures,
    batches in flight, cost and the time left."""

    def __init__(self, console: Console, total: int) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._console = console
        self._sent = self._progress.add_task("requests sent", total=total, extra="")
        self._stored = self._progress.add_task("results stored", total=total, extra="")
        self._done = self._progress.add_task("items finished", total=total, extra="")
        self._seen: dict[TaskID, float] = {}

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
        total = report.job.items_total
        in_flight = report.count_batches(SENT_BATCH_STATUSES)
        sent = report.sent_requests
        self._set(self._sent, sent, sent + report.unsent_requests, f"{in_flight} batches in flight")
        stored = sum(report.results.values())
        self._set(self._stored, stored, max(sent, total), "")
        failed = report.items.get(ItemStatus.FAILED, 0)
        extra = (
            f"{failed:,} failed, ${report.cost_usd:.4f}" if failed else f"${report.cost_usd:.4f}"
        )
        self._set(self._done, report.terminal, total, extra)

    def figures(self) -> dict[str, tuple[float, float]]:
        """Each bar's (completed, total), as shown."""
        return {
            str(task.description): (task.completed, task.total or 0.0)
            for task in self._progress.tasks
        }

    def waiting(self, reason: str | None) -> None:
        """Say above the bars why the job is held back (or that it moves again)."""
        self._console.print(f"waiting: {reason}" if reason else "moving again", highlight=False)

    def _set(self, task: TaskID, completed: int, total: int, extra: str) -> None:
        # Never backwards: a figure read before a retry was planned stays shown.
        shown = max(float(completed), self._seen.get(task, 0.0))
        self._seen[task] = shown
        self._progress.update(task, completed=shown, total=max(total, shown), extra=extra)


def print_summary(
    console: Console, report: JobReport, where: str, waiting: str | None = None
) -> None:
    """The job's outcome: items by state, failures by error type, batches, tokens, cost."""
    job = report.job
    table = Table(title=f"job {job.name} (id {job.id}): {job.status.value}", show_header=False)
    table.add_row("items", f"{job.items_total:,}")
    for status in _SUMMARY_ORDER:
        if report.items.get(status):
            table.add_row(f"  {status}", f"{report.items[status]:,}")
    for group in report.failures:
        example = (
            group.example
            if len(group.example) <= EXAMPLE_CHARS
            else (group.example[: EXAMPLE_CHARS - 1] + "…")
        )
        table.add_row(f"    failed: {group.error_type}", f"{group.items:,}  e.g. {example}")
    table.add_row("items retried", f"{report.retried_items:,}")
    table.add_row("requests sent", f"{report.sent_requests:,}")
    table.add_row("batches", ", ".join(f"{k} {v}" for k, v in sorted(report.batches.items())))
    table.add_row(
        "results stored", ", ".join(f"{k} {v}" for k, v in sorted(report.results.items()))
    )
    if job.output is not None:
        table.add_row(
            "answers off-schema",
            f"{report.invalid_answers:,} (paid; retried, or failed as invalid_output)",
        )
    table.add_row("tokens in / out", f"{report.input_tokens:,} / {report.output_tokens:,}")
    table.add_row("cost (batch prices)", f"${report.cost_usd:.4f}")
    if report.duplicate_requests:
        table.add_row(
            "duplicate spend",
            f"{report.duplicate_requests:,} requests billed twice (duplicates of a lost create)",
        )
    if job.cache_hits:
        table.add_row(
            "answered from cache", f"{job.cache_hits:,} items, saved ${job.cache_saved_usd:.4f}"
        )
    if report.quarantined:
        table.add_row("quarantined lines", f"{report.quarantined:,} (table quarantine)")
    if waiting:
        table.add_row("waiting", waiting)
    console.print(table)
    console.print(f"\nQuery the answers ({where}):")
    console.print(sample_query(job), markup=False, highlight=False)


def sample_query(job: JobRecord) -> str:
    """A query to paste: the typed answers of a job with ``[output]``, else the texts."""
    if job.output is None or job.view_name is None:
        return SAMPLE_QUERY.format(job=job.name)
    names = ", ".join(f'"{name}"' for name in list(job.output.properties)[:4])
    return VIEW_QUERY.format(columns=names, view=job.view_name)


def print_estimate(console: Console, name: str, found: CostEstimate, budget: float | None) -> None:
    """What ``orchestrator estimate`` (and ``run`` before it sends) shows."""
    table = Table(title=f"estimate for {name} (nothing sent)", show_header=False)
    table.add_row("items", f"{found.items:,}")
    table.add_row("batches", f"{found.batches:,}")
    if found.method == "bytes":
        how = f"approximated from request bytes ({found.approximated_because})"
    elif found.exact:
        how = f"counted with the count-tokens endpoint ({found.counted:,} requests: exact)"
    else:
        how = (
            f"± {found.input_margin:,} (95 %), extrapolated from {found.counted:,} requests "
            "counted with the count-tokens endpoint"
        )
    table.add_row("input tokens", f"{found.input_tokens:,}  {how}")
    table.add_row("output tokens", f"at most {found.output_ceiling:,} (every answer at max_tokens)")
    cost = f"${found.usd_low:.4f} to ${found.usd_high:.4f} at batch prices"
    if found.unpriced_items:
        cost += f" ({found.unpriced_items:,} items of unpriced models not included)"
    table.add_row("cost", cost)
    if budget is not None:
        verdict = "within" if found.usd_high <= budget else "OVER"
        table.add_row("budget_usd", f"${budget:.2f}: the high end is {verdict} it")
    console.print(table)
