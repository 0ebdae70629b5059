"""Simulator throughput: create a 100,000-request batch over loopback HTTP, download results.

Run: ``.venv/bin/python bench/simulator_throughput.py [--requests N]``. The simulator
runs in a child process (``serve``), so the client does not share its GIL and the
server's memory is measured alone: RSS growth from storing the batch (bytes per
request, includes allocator slack from parsing the body) and the server's peak RSS.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
import tracemalloc

import httpx
import orjson

from orchestrator.simulator import SimulatorConfig, SimulatorState

SERVER = """
import sys
from orchestrator.simulator import SimulatorConfig, serve
config = SimulatorConfig(processing_seconds=0.0, errored_share={"api_error": 0.01})
serve(config, "127.0.0.1", 0, on_ready=lambda url: print(url, flush=True))
"""

HEADERS = {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"}
LABEL_PROMPT = "Classify this review as positive, negative or neutral: {review}"
REVIEWS = ("I love it, great value", "Arrived broken, I want a refund", "It is a lamp")


def _rss_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def build_body(count: int) -> bytes:
    requests = [
        {
            "custom_id": f"req-{n:06d}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 64,
                "messages": [
                    {
                        "role": "user",
                        "content": LABEL_PROMPT.format(review=REVIEWS[n % 3]) + f" #{n}",
                    }
                ],
            },
        }
        for n in range(count)
    ]
    return orjson.dumps({"requests": requests})


def run(count: int) -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        with httpx.Client(base_url=base_url, timeout=600) as client:
            measure(client, server.pid, count)
    finally:
        server.terminate()
        server.wait()


def measure(client: httpx.Client, pid: int, count: int) -> None:
    body = build_body(count)
    rss_before = _rss_kib(pid, "VmRSS:")
    started = time.perf_counter()
    created = client.post("/v1/messages/batches", content=body, headers=HEADERS)
    created.raise_for_status()
    create_s = time.perf_counter() - started
    stored_kib = _rss_kib(pid, "VmRSS:") - rss_before
    batch = client.get(f"/v1/messages/batches/{created.json()['id']}", headers=HEADERS).json()
    size, lines, download_s = download(client, batch["results_url"])
    machine = f"{platform.node()} {platform.machine()} python {platform.python_version()}"
    per_request = stored_kib * 1024 / count
    rate = size / 1e6 / download_s
    print(f"machine        : {machine}")
    print(f"requests       : {count:,} (result lines received: {lines:,})")
    print(f"body           : {len(body) / 1e6:.1f} MB, create {create_s:.2f} s over HTTP")
    print(f"stored (RSS)   : {stored_kib / 1024:.1f} MiB growth, {per_request:.0f} B/request")
    print(f"stored (traced): {retained_bytes_per_request(count):.0f} B/request still allocated")
    print(f"results        : {size / 1e6:.1f} MB in {download_s:.2f} s = {rate:.1f} MB/s")
    print(f"server peak RSS: {_rss_kib(pid, 'VmHWM:') / 1024:.0f} MiB")


def retained_bytes_per_request(count: int) -> float:
    """Bytes per request the store keeps after create (tracemalloc, in this process)."""
    pairs = [(r["custom_id"], r["params"]) for r in orjson.loads(build_body(count))["requests"]]
    state = SimulatorState(SimulatorConfig(processing_seconds=0.0))
    tracemalloc.start()
    state.create_batch(pairs, frozenset())
    del pairs
    retained = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return retained / count


def download(client: httpx.Client, url: str) -> tuple[int, int, float]:
    started = time.perf_counter()
    size = lines = 0
    with client.stream("GET", url, headers=HEADERS) as response:
        for chunk in response.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    return size, lines, time.perf_counter() - started


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    run(parser.parse_args().requests)
