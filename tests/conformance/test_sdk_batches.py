"""The official anthropic SDK, over real HTTP, cannot tell the simulator from the API."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import anthropic
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse

from orchestrator.simulator import ManualClock, SimulatorServer

from .conftest import MODEL, request

BATCH_ID = re.compile(r"msgbatch_01[1-9A-HJ-NP-Za-km-z]{22}")
MSG_ID = re.compile(r"msg_01[1-9A-HJ-NP-Za-km-z]{22}")


def test_create_poll_and_results_of_all_four_types(
    make_sim: Callable[..., SimulatorServer], clock: ManualClock
) -> None:
    sim = make_sim(processing_seconds=60.0, expired_share=0.2, errored_share={"api_error": 0.2})
    requests = [
        request(f"r{n}", f"Review {n}: great, I love it. Positive or negative?") for n in range(40)
    ]
    requests.append(request("bad-model", model="claude-does-not-exist"))
    with anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client:
        batch = client.messages.batches.create(requests=requests)
        assert BATCH_ID.fullmatch(batch.id)
        assert batch.processing_status == "in_progress"
        assert batch.request_counts.processing == 41
        assert batch.results_url is None
        assert (batch.expires_at - batch.created_at).total_seconds() == 86_400
        clock.advance(61)
        ended = client.messages.batches.retrieve(batch.id)
        results = list(client.messages.batches.results(batch.id))
    counts = ended.request_counts
    assert ended.processing_status == "ended"
    assert counts.processing == 0
    assert counts.succeeded + counts.errored + counts.expired + counts.canceled == 41
    assert ended.results_url == f"{sim.base_url}/v1/messages/batches/{batch.id}/results"
    assert all(isinstance(r, MessageBatchIndividualResponse) for r in results)
    by_id = {r.custom_id: r.result for r in results}
    assert len(by_id) == 41
    bad = by_id["bad-model"]
    assert bad.type == "errored"
    assert bad.error.error.type == "invalid_request_error"
    types = Counter(r.type for r in by_id.values())
    assert types == {
        "succeeded": counts.succeeded,
        "errored": counts.errored,
        "expired": counts.expired,
    }
    assert types["expired"] > 0
    assert types["errored"] > 1
    assert any(r.type == "errored" and r.error.error.type == "api_error" for r in by_id.values())
    message = next(r.message for r in by_id.values() if r.type == "succeeded")
    assert MSG_ID.fullmatch(message.id)
    assert message.model == MODEL
    assert message.content[0].type == "text"
    assert message.content[0].text.lower() == "positive"
    assert message.usage.service_tier == "batch"
    assert message.usage.input_tokens > 0


def test_cancel_ends_with_canceled_results(
    make_sim: Callable[..., SimulatorServer], clock: ManualClock
) -> None:
    sim = make_sim(processing_seconds=600.0, cancel_seconds=2.0, cancel_inflight_share=0.25)
    with anthropic.Anthropic(api_key="sk-test", base_url=sim.base_url, max_retries=0) as client:
        batch = client.messages.batches.create(requests=[request(f"c{n}") for n in range(20)])
        canceling = client.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling"
        assert canceling.cancel_initiated_at is not None
        assert canceling.request_counts.processing == 20
        assert client.messages.batches.cancel(batch.id).processing_status == "canceling"
        clock.advance(2)
        ended = client.messages.batches.retrieve(batch.id)
        results = list(client.messages.batches.results(batch.id))
        with pytest.raises(anthropic.BadRequestError):
            client.messages.batches.cancel(batch.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.canceled + ended.request_counts.succeeded == 20
    assert ended.request_counts.canceled > 0
    assert Counter(r.result.type for r in results)["canceled"] == ended.request_counts.canceled


def test_list_auto_paginates_newest_first(client: anthropic.Anthropic, clock: ManualClock) -> None:
    created = []
    for n in range(7):
        created.append(client.messages.batches.create(requests=[request(f"l{n}")]).id)
        if n % 3 == 0:
            clock.advance(1)  # some share a timestamp, some do not
    listed = [batch.id for batch in client.messages.batches.list(limit=2)]
    assert listed == list(reversed(created))
    first_page = client.messages.batches.list(limit=2)
    assert first_page.has_more
    assert first_page.first_id == created[-1]


def test_delete_then_not_found(client: anthropic.Anthropic, clock: ManualClock) -> None:
    batch = client.messages.batches.create(requests=[request("d1")])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)
    clock.advance(3600)
    deleted = client.messages.batches.delete(batch.id)
    assert deleted.id == batch.id
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.delete(batch.id)
    assert batch.id not in [b.id for b in client.messages.batches.list()]


@pytest.mark.parametrize(
    "requests",
    [
        [request("has:colon")],
        [request("x" * 65)],
        [request("dup"), request("dup")],
        [{"custom_id": "no-params"}],
    ],
    ids=["bad-charset", "too-long", "duplicate", "missing-params"],
)
def test_bad_envelopes_are_400(client: anthropic.Anthropic, requests: list[object]) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert raised.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert re.fullmatch(r"req_\w{24}", raised.value.request_id or "")


def test_2026_version_rejects_temperature_at_create(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        client.messages.batches.create(requests=[request("t1", temperature=0.5)])
    with pytest.raises(anthropic.BadRequestError, match="top_k"):
        client.messages.create(
            model=MODEL,
            max_tokens=5,
            messages=[{"role": "user", "content": "x"}],
            extra_body={"top_k": 5},
        )
    old = client.with_options(default_headers={"anthropic-version": "2023-06-01"})
    assert old.messages.batches.create(requests=[request("t2", temperature=0.5)]).id


def test_results_before_end_is_a_client_side_error(client: anthropic.Anthropic) -> None:
    batch = client.messages.batches.create(requests=[request("early")])
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        list(client.messages.batches.results(batch.id))
