"""The baseline: the bare official-SDK loop that stores nothing.

Reads the same rows as the orchestrator's job, builds the same requests, creates one
batch per 100,000 requests, polls each with ``retrieve`` until it ends, and iterates its
results (counting them by type). Nothing is written anywhere: this is the floor a tool
that keeps a store must match. Run by ``bench/end_to_end.py``; by hand::

    ANTHROPIC_API_KEY=... ANTHROPIC_BASE_URL=http://127.0.0.1:PORT \\
        .venv/bin/python bench/sdk_loop.py rows.jsonl
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anthropic
from _common import MAX_TOKENS, MODEL, PROMPT

PER_BATCH = 100_000


def main() -> None:
    rows = Path(sys.argv[1])
    poll = float(os.environ.get("ORCHESTRATOR_POLL_INTERVAL", "0.2"))
    client = anthropic.Anthropic(max_retries=5)
    requests: list[dict[str, Any]] = []
    batches: list[str] = []
    with rows.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            requests.append(
                {
                    "custom_id": row["id"],
                    "params": {
                        "model": MODEL,
                        "max_tokens": MAX_TOKENS,
                        "messages": [{"role": "user", "content": PROMPT.format(text=row["text"])}],
                    },
                }
            )
            if len(requests) == PER_BATCH:
                batches.append(client.messages.batches.create(requests=requests).id)  # type: ignore[arg-type]
                requests = []
    if requests:
        batches.append(client.messages.batches.create(requests=requests).id)  # type: ignore[arg-type]
    counts: Counter[str] = Counter()
    for batch_id in batches:
        while client.messages.batches.retrieve(batch_id).processing_status != "ended":
            time.sleep(poll)
        for result in client.messages.batches.results(batch_id):
            counts[result.result.type] += 1
    print(json.dumps(dict(counts)))


if __name__ == "__main__":
    main()
