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


@pytest.mark.parametrize(
    ("case", "listing", "owned", "now_offset_s", "verdict", "chosen", "others"),
    [
        ("one match", [listed("a", 2)], set(), 5, Verdict.ADOPT, "a", []),
        ("nothing yet, before the deadline", [], set(), 60, Verdict.WAIT, None, []),
        ("nothing by the deadline", [], set(), 61, Verdict.REPLAN, None, []),
        ("match already owned or foreign", [listed("a", 2)], {"a"}, 71, Verdict.REPLAN, None, []),
        ("wrong request count", [listed("a", 2, COUNT + 1)], set(), 71, Verdict.REPLAN, None, []),
        ("before the window", [listed("a", -11)], set(), 71, Verdict.REPLAN, None, []),
        ("after the window", [listed("a", 71)], set(), 80, Verdict.REPLAN, None, []),
        ("skewed clock, inside", [listed("a", -9)], set(), 5, Verdict.ADOPT, "a", []),
        (
            "several: closest to the intent wins",
            [listed("far", 50), listed("near", -3), listed("mid", 20)],
            set(),
            5,
            Verdict.ADOPT,
            "near",
            ["far", "mid"],
        ),
        (
            "an owned one does not compete",
            [listed("near", 1), listed("mine", 0)],
            {"mine"},
            5,
            Verdict.ADOPT,
            "near",
            [],
        ),
    ],
)
def test_reconcile(
    case: str,
    listing: list[MessageBatch],
    owned: set[str],
    now_offset_s: float,
    verdict: Verdict,
    chosen: str | None,
    others: list[str],
) -> None:
    now = INTENT + timedelta(seconds=now_offset_s)
    found = reconcile(COUNT, INTENT, DEADLINE, WINDOW, listing, owned, now)
    assert found.verdict is verdict, case
    assert (found.chosen.id if found.chosen else None) == chosen, case
    assert [r.id for r in found.others] == others, case
