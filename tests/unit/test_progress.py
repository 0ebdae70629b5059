"""The progress bars only ever grow, and count what their labels say."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime

from rich.console import Console

from orchestrator.domain.states import BatchStatus, ItemStatus, JobStatus, ResultType
from orchestrator.progress import JobProgress, print_summary
from orchestrator.store.records import FailureGroup, JobRecord, JobReport

JOB = JobRecord(
    id=1,
    name="bars",
    status=JobStatus.ACTIVE,
    content_hash="h",
    spec_path="spec.toml",
    max_attempts=3,
    max_requests=100,
    max_bytes=1000,
    use_cache=True,
    budget_usd=None,
    schedule=None,
    api_version="2026-10-21",
    items_total=100,
    cache_hits=0,
    cache_saved_usd=0.0,
    created_at=datetime(2026, 11, 22, tzinfo=UTC),
    finished_at=None,
)
S, F, P, Q = ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.PENDING, ItemStatus.QUEUED


def test_a_retry_grows_the_total_and_never_moves_a_bar_back() -> None:
    steps = [
        JobReport(JOB, items={Q: 100}, unsent_requests=100),
        JobReport(
            JOB,
            items={Q: 100},
            batches={BatchStatus.IN_PROGRESS: 1},
            sent_requests=100,
        ),
        # 20 results are errored and retried: those items go back to pending.
        JobReport(
            JOB,
            items={S: 80, P: 20},
            results={ResultType.SUCCEEDED: 80, ResultType.ERRORED: 20},
            sent_requests=100,
            unsent_requests=20,
        ),
        JobReport(
            replace(JOB, status=JobStatus.DONE),
            items={S: 95, F: 5},
            results={ResultType.SUCCEEDED: 95, ResultType.ERRORED: 25},
            sent_requests=120,
        ),
    ]
    seen: list[dict[str, tuple[float, float]]] = []
    with JobProgress(Console(file=io.StringIO()), 100) as progress:
        for report in steps:
            progress.update(report)
            seen.append(progress.figures())
    for label in ("requests sent", "results stored", "items finished"):
        shown = [figures[label][0] for figures in seen]
        assert shown == sorted(shown), f"{label} went backwards: {shown}"
    assert seen[2]["requests sent"] == (100.0, 120.0)  # 20 retries still to send
    assert seen[-1] == {
        "requests sent": (120.0, 120.0),
        "results stored": (120.0, 120.0),
        "items finished": (100.0, 100.0),
    }


def test_the_summary_groups_failures_with_an_example() -> None:
    out = io.StringIO()
    report = JobReport(
        replace(JOB, status=JobStatus.DONE),
        items={S: 90, F: 10},
        failures=(
            FailureGroup("invalid_request_error", 7, "max_tokens: too large"),
            FailureGroup("expired", 3, "the batch expired (after 3 attempts)"),
        ),
    )
    print_summary(Console(file=out, width=120), report, "sqlite:///s.db", waiting=None)
    text = out.getvalue()
    assert "failed: invalid_request_error │ 7  e.g. max_tokens: too large" in text
    assert "failed: expired" in text
    assert "succeeded" in text
