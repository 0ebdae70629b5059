"""The Python API against the simulator: rows in (dicts, a pandas DataFrame), events out
exactly once, typed results equal to the simulator's answers, a job reopened by name."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import httpx
import pandas as pd
import pytest
from pydantic import BaseModel, Field

from orchestrator import (
    BatchChanged,
    Ended,
    ItemFinished,
    JobConflictError,
    JobEventHandler,
    JobReport,
    Orchestrator,
    Progress,
)
from orchestrator.errors import ConfigError
from orchestrator.simulator import SimulatorServer

ROWS = 1000
REQUEST = {"model": "claude-haiku-4-5", "max_tokens": 64, "prompt": "Review of {product}: {text}"}


class Label(BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    confidence: float = Field(ge=0, le=1)
    topics: list[str] = Field(min_length=1, max_length=3)


class Recorder(JobEventHandler):
    def __init__(self) -> None:
        self.items: Counter[str] = Counter()
        self.batches: list[BatchChanged] = []
        self.progress = 0
        self.ends: list[JobReport] = []
        self.errors: list[BaseException] = []

    def on_item(self, item: ItemFinished) -> None:
        self.items[item.key] += 1

    def on_batch(self, batch: BatchChanged) -> None:
        self.batches.append(batch)

    def on_progress(self, report: JobReport) -> None:
        self.progress += 1

    def on_exception(self, exc: BaseException) -> None:
        self.errors.append(exc)

    def on_end(self, report: JobReport) -> None:
        self.ends.append(report)


def rows() -> list[dict[str, Any]]:
    return [
        {"id": f"r{n:04d}", "product": ("lamp", "kettle")[n % 2], "text": f"review {n}", "n": n}
        for n in range(ROWS)
    ]


def orchestrator(sim: SimulatorServer, tmp_path: Path) -> Orchestrator:
    return Orchestrator(
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        api_key="sk-python-api",
        base_url=sim.base_url,
        poll_interval_s=0.05,
    )


def served(sim: SimulatorServer) -> dict[str, dict[str, Any]]:
    """custom_id -> the JSON answer the simulator gave, read from its results files."""
    answers: dict[str, dict[str, Any]] = {}
    headers = {"x-api-key": "sk-python-api", "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=sim.base_url, headers=headers) as http:
        for batch in sim.state.batches():
            for line in http.get(f"/v1/messages/batches/{batch.id}/results").text.splitlines():
                result = json.loads(line)
                if result["result"]["type"] == "succeeded":
                    blocks = result["result"]["message"]["content"]
                    text = "".join(b["text"] for b in blocks if b["type"] == "text")
                    answers[result["custom_id"]] = json.loads(text)
    return answers


@pytest.mark.parametrize("kind", ["dicts", "pandas"])
def test_rows_in_typed_results_out_each_item_reported_once(
    sim: SimulatorServer, tmp_path: Path, kind: str
) -> None:
    data: Any = rows() if kind == "dicts" else pd.DataFrame(rows())
    with orchestrator(sim, tmp_path) as orch:
        job = orch.submit(name="reviews", rows=data, request=REQUEST, output=Label, key="id")
        assert job.report().job.items_total == ROWS
        handler = Recorder()

        final = job.until_done(handler=handler)

        assert final.job.status.value == "done"
        assert handler.items == Counter({row["id"]: 1 for row in rows()})
        assert len(handler.ends) == 1
        assert handler.ends[0] == final
        assert handler.progress >= 1
        assert handler.errors == []
        assert {b.status.value for b in handler.batches} >= {"ingested"}
        answers = served(sim)
        results = list(job.results())
        assert [r.key for r in results] == [row["id"] for row in rows()]
        for result, row in zip(results, rows(), strict=True):
            assert result.input == row
            assert result.status == "succeeded"
            assert isinstance(result.output, Label)
            assert result.custom_id is not None
            assert result.output.model_dump() == answers[result.custom_id]

        frame = job.to_pandas()
        assert len(frame) == ROWS
        # Typed answer columns, then the input row's ("text" is a result field too).
        assert list(frame.columns[5:12]) == [
            "sentiment",
            "confidence",
            "topics",
            "id",
            "product",
            "input_text",
            "n",
        ]
        assert frame["confidence"].dtype == "float64"
        first = frame.iloc[0]
        assert first["product"] == "lamp"
        assert first["sentiment"] == answers[first["custom_id"]]["sentiment"]
        assert json.loads(first["topics"]) == answers[first["custom_id"]]["topics"]
        assert job.to_polars().shape == frame.shape


def test_a_job_reopened_by_name_is_watched_and_resubmitting_finds_it(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    with orchestrator(sim, tmp_path) as orch:
        first = orch.submit(name="small", rows=rows()[:20], request=REQUEST, output=Label)
        events = list(first.events())
        assert isinstance(events[-1], Ended)
        assert sum(isinstance(e, ItemFinished) for e in events) == 20
        assert any(isinstance(e, Progress) for e in events)

        # The same rows under the same name: the same job, nothing sent again.
        again = orch.submit(name="small", rows=rows()[:20], request=REQUEST, output=Label)
        assert again.id == first.id
        with pytest.raises(JobConflictError):
            orch.submit(name="small", rows=rows()[:21], request=REQUEST, output=Label)

    with orchestrator(sim, tmp_path) as orch:
        reopened = orch.job("small", output=Label)
        watcher = Recorder()
        assert reopened.watch(handler=watcher).job.status.value == "done"
        assert sum(watcher.items.values()) == 20  # already finished: reported once each
        assert len(watcher.ends) == 1
        assert all(isinstance(r.output, Label) for r in reopened.results())
        assert asyncio.run(reopened.wait()).job.status.value == "done"


def test_a_missing_extra_is_named(
    sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with orchestrator(sim, tmp_path) as orch:
        job = orch.submit(name="plain", rows=rows()[:3], request=REQUEST)
        job.until_done()
        assert [r.output for r in job.results()] == [None, None, None]
        monkeypatch.setitem(sys.modules, "pandas", None)
        with pytest.raises(ConfigError, match=r"batch-orchestrator\[pandas\]"):
            job.to_pandas()
