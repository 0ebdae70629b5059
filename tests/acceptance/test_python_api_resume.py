"""A process driving ``Job.until_done()`` is SIGKILLed mid-job; reopening the job by name
and driving it again finishes it with nothing sent twice (checked on the simulator's
ledger) and every item answered once."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrator import ItemFinished, JobEventHandler, Orchestrator
from orchestrator.simulator import SimulatorConfig, SimulatorServer
from tests.acceptance.reliability_support import (
    assert_items_terminal_once,
    assert_sent_once,
    assert_store_agrees_with_ledger,
)
from tests.acceptance.support import SECRET_KEY, clean_env

ROWS = 1000
DRIVER = """
from orchestrator import Orchestrator

rows = [{{"id": f"k{{n}}", "text": f"text {{n}}"}} for n in range({rows})]
orch = Orchestrator(database_url="{url}", api_key="{key}", base_url="{base}", poll_interval_s=0.1)
job = orch.submit(
    name="notebook",
    rows=rows,
    request={{"model": "claude-haiku-4-5", "max_tokens": 16, "prompt": "Say {{text}}"}},
    batching={{"max_requests": 100}},
)
job.until_done()
"""


class Items(JobEventHandler):
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def on_item(self, item: ItemFinished) -> None:
        self.seen[item.key] += 1


@pytest.mark.timeout(240)
def test_a_killed_until_done_resumes_without_paying_twice(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    url = f"sqlite:///{db}"
    config = SimulatorConfig(seed=11, processing_seconds=1.5)
    with SimulatorServer(config) as sim:
        script = tmp_path / "driver.py"
        script.write_text(
            textwrap.dedent(DRIVER).format(rows=ROWS, url=url, key=SECRET_KEY, base=sim.base_url)
        )
        driver = subprocess.Popen([sys.executable, str(script)], env=clean_env())
        try:
            deadline = time.monotonic() + 60
            while len(sim.state.batches()) < 3:  # some batches made, most not ended yet
                assert driver.poll() is None, "the driver ended before it could be killed"
                assert time.monotonic() < deadline, "the driver made no batches"
                time.sleep(0.01)
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=10)
        finally:
            if driver.poll() is None:
                driver.kill()
        assert driver.returncode == -signal.SIGKILL

        with Orchestrator(
            database_url=url, api_key=SECRET_KEY, base_url=sim.base_url, poll_interval_s=0.1
        ) as orch:
            job = orch.job("notebook")
            assert job.report().job.status.value == "active"
            items = Items()
            final = job.until_done(handler=items)
        ledger = sim.state.ledger.to_json()

    assert final.job.status.value == "done"
    assert items.seen == Counter({f"k{n}": 1 for n in range(ROWS)})
    assert_items_terminal_once(db, "notebook", ROWS)
    assert_sent_once(ledger)
    assert_store_agrees_with_ledger(ledger, db)
