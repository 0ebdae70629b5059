"""recover.reconcile: which listed batch, if any, a create of unknown outcome made; and
how long such a create is waited for (domain.recovery)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.api.models import MessageBatch
from orchestrator.domain.recovery import (
    CREATE_SETTLE_S,
    answered_deadline,
    match_window,
    unanswered_deadline,
)
from orchestrator.steps.recover import Verdict, reconcile
from orchestrator.store.records import Claim
from tests.unit.api.fakes import batch_json

INTENT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DEADLINE = INTENT + timedelta(seconds=60)
WINDOW = match_window(INTENT, DEADLINE, skew_s=10)  # 11:59:50 .. 12:01:10
COUNT = 500


def listed(batch_id: str, offset_s: float, requests: int = COUNT) -> MessageBatch:
    """A listed batch created ``offset_s`` after the intent, holding ``requests`` requests."""
    created = INTENT + timedelta(seconds=offset_s)
    counts = {"processing": requests, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    raw = batch_json(batch_id, created_at=created.isoformat(), request_counts=counts)
    return MessageBatch.model_validate(raw)


def test_the_window_is_the_wait_widened_by_the_clock_skew() -> None:
    assert WINDOW == (INTENT - timedelta(seconds=10), INTENT + timedelta(seconds=70))


def test_an_answered_create_is_settled_within_seconds() -> None:
    answered = INTENT + timedelta(seconds=2)
    assert answered_deadline(answered) == answered + timedelta(seconds=CREATE_SETTLE_S)


@pytest.mark.parametrize(
    ("body_bytes", "timeout_s", "wait_s"),
    [(1_000, 60, 60.001), (256_000_000, 60, 316), (10_000_000, 5, 15)],
)
def test_an_unanswered_create_waits_for_its_upload_and_its_timeout(
    body_bytes: int, timeout_s: float, wait_s: float
) -> None:
    deadline = unanswered_deadline(INTENT, body_bytes, timeout_s)
    expected = INTENT + timedelta(seconds=wait_s + CREATE_SETTLE_S)
    assert abs((deadline - expected).total_seconds()) < 0.01


THIS = 7  # the local batch whose create is reconciled
OTHER = 8  # another local batch
BEFORE = INTENT - timedelta(seconds=1)
AFTER = INTENT + timedelta(seconds=1)
PROVEN = Claim(OTHER, BEFORE, settled=True)
FOREIGN = Claim(None, None, settled=True)


@pytest.mark.parametrize(
    ("case", "listing", "claims", "now_offset_s", "verdict", "chosen", "others"),
    [
        ("one match", [listed("a", 2)], {}, 5, Verdict.ADOPT, "a", []),
        ("nothing yet, before the deadline", [], {}, 60, Verdict.WAIT, None, []),
        ("nothing by the deadline", [], {}, 61, Verdict.REPLAN, None, []),
        (
            "match created by another batch",
            [listed("a", 2)],
            {"a": PROVEN},
            71,
            Verdict.REPLAN,
            None,
            [],
        ),
        ("match proven foreign", [listed("a", 2)], {"a": FOREIGN}, 71, Verdict.REPLAN, None, []),
        ("wrong request count", [listed("a", 2, COUNT + 1)], {}, 71, Verdict.REPLAN, None, []),
        ("before the window", [listed("a", -11)], {}, 71, Verdict.REPLAN, None, []),
        ("after the window", [listed("a", 71)], {}, 80, Verdict.REPLAN, None, []),
        ("skewed clock, inside", [listed("a", -9)], {}, 5, Verdict.ADOPT, "a", []),
        (
            "several: closest to the intent wins",
            [listed("far", 50), listed("near", -3), listed("mid", 20)],
            {},
            5,
            Verdict.ADOPT,
            "near",
            ["far", "mid"],
        ),
        (
            "an owned one does not compete",
            [listed("near", 1), listed("mine", 0)],
            {"mine": PROVEN},
            5,
            Verdict.ADOPT,
            "near",
            [],
        ),
        (
            "one this create watches is still a candidate",
            [listed("a", 0), listed("b", 3)],
            {"a": FOREIGN, "b": Claim(THIS, BEFORE, settled=False)},
            5,
            Verdict.ADOPT,
            "b",
            [],
        ),
        (
            "held tentatively since before the intent: it existed before the create",
            [listed("a", -2)],
            {"a": Claim(OTHER, BEFORE, settled=False)},
            71,
            Verdict.REPLAN,
            None,
            [],
        ),
        (
            "watched by another create since before the intent",
            [listed("a", -2)],
            {"a": Claim(OTHER, BEFORE, settled=False)},
            71,
            Verdict.REPLAN,
            None,
            [],
        ),
        (
            "held tentatively since the intent: wait for its proof, past the deadline",
            [listed("a", 2)],
            {"a": Claim(OTHER, AFTER, settled=False)},
            500,
            Verdict.WAIT,
            None,
            [],
        ),
        (
            "a free candidate is adopted even while another is contested",
            [listed("a", 2), listed("b", 4)],
            {"a": Claim(OTHER, AFTER, settled=False)},
            5,
            Verdict.ADOPT,
            "b",
            [],
        ),
    ],
)
def test_reconcile(
    case: str,
    listing: list[MessageBatch],
    claims: dict[str, Claim],
    now_offset_s: float,
    verdict: Verdict,
    chosen: str | None,
    others: list[str],
) -> None:
    now = INTENT + timedelta(seconds=now_offset_s)
    found = reconcile(THIS, COUNT, INTENT, DEADLINE, WINDOW, listing, claims, now)
    assert found.verdict is verdict, case
    assert (found.chosen.id if found.chosen else None) == chosen, case
    assert [r.id for r in found.others] == others, case
