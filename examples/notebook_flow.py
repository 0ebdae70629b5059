"""The notebook flow of docs/python-api.md, runnable as is: rows in, typed results out.

    python examples/notebook_flow.py

Starts the simulator in-process on loopback (no API key, no network, no spend), labels
200 reviews from a pandas DataFrame into ``examples.db`` and prints the first answers.
Against the real API, drop the simulator and let ``Orchestrator()`` read
``ANTHROPIC_API_KEY`` from the environment.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import BaseModel, Field

from orchestrator import ItemFinished, JobEventHandler, JobReport, Orchestrator
from orchestrator.simulator import SimulatorConfig, SimulatorServer


class Label(BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    confidence: float = Field(ge=0, le=1)
    topics: list[Literal["quality", "price", "shipping", "design"]] = Field(max_length=3)


class Printer(JobEventHandler):
    def __init__(self) -> None:
        self.finished = 0

    def on_item(self, item: ItemFinished) -> None:
        self.finished += 1
        if self.finished % 50 == 0:
            print(f"{self.finished} items finished (latest: {item.key}, {item.status})")

    def on_end(self, report: JobReport) -> None:
        print(f"job {report.job.name}: {report.job.status.value}, ${report.cost_usd:.4f}")


def main() -> None:
    products = ["desk lamp", "kettle", "backpack", "earbuds"]
    rows = pd.DataFrame(
        {
            "id": [f"r{n:03d}" for n in range(200)],
            "product": [products[n % 4] for n in range(200)],
            "text": [f"The {products[n % 4]} is fine, review number {n}." for n in range(200)],
        }
    )
    with SimulatorServer(SimulatorConfig(processing_seconds=1.0)) as sim:
        with Orchestrator(
            database_url="sqlite:///examples.db", api_key="sk-simulator", base_url=sim.base_url
        ) as orch:
            job = orch.submit(
                name="notebook-reviews",
                rows=rows,
                request={
                    "model": "claude-haiku-4-5",
                    "max_tokens": 128,
                    "prompt": "Product: {product}\nReview: {text}",
                },
                output=Label,
                key="id",
            )
            job.until_done(handler=Printer())
            for result in list(job.results())[:3]:
                print(result.key, result.input and result.input["product"], result.output)
            print(job.to_pandas()[["key", "product", "sentiment", "confidence"]].head())


if __name__ == "__main__":
    main()
