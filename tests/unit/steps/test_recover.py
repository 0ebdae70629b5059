"""recover.reconcile: which listed batch, if any, a create of unknown outcome made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.api.models import MessageBatch
from orchestrator.steps.recover import Verdict, create_window, reconcile
from tests.unit.api.fakes import batch_json

INTENT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
WINDOW = create_window(INTENT, upload_s=60, skew_s=10)  # 11:59:50 .. 12:01:10
COUNT = 500


def listed(batch_id: str, offset_s: float, requests: int = COUNT) -> MessageBatch:
    """A listed batch created ``offset_s`` after the intent, holding ``requests`` requests."""
    created = INTENT + timedelta(seconds=offset_s)
    counts = {"processing": requests, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    raw = batch_json(batch_id, created_at=created.isoformat(), request_counts=counts)
    return MessageBatch.model_validate(raw)


def test_the_window_spans_the_upload_and_the_clock_skew() -> None:
    assert WINDOW == (INTENT - timedelta(seconds=10), INTENT + timedelta(seconds=70))


@pytest.mark.parametrize(
    ("case", "listing", "owned", "now_offset_s", "verdict", "chosen", "others"),
    [
        ("one match", [listed("a", 2)], set(), 5, Verdict.ADOPT, "a", []),
        ("nothing yet, window open", [], set(), 30, Verdict.WAIT, None, []),
        ("nothing in the whole window", [], set(), 71, Verdict.REPLAN, None, []),
        ("match already owned", [listed("a", 2)], {"a"}, 71, Verdict.REPLAN, None, []),
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
    found = reconcile(COUNT, INTENT, WINDOW, listing, owned, now)
    assert found.verdict is verdict, case
    assert (found.chosen.id if found.chosen else None) == chosen, case
    assert [r.id for r in found.others] == others, case
