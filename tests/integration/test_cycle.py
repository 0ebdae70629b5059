"""A cycle survives transient API failures that outlast the client's retries.

``orchestrator run`` and the daemon call the same ``run_cycle``: a 5xx storm
must skip the failing step for one cycle, not end the command.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.domain.states import BatchStatus
from orchestrator.simulator import SimulatorServer
from orchestrator.steps import run_cycle
from tests.integration.conftest import MakeCtx, ledger, new_job, run_job, write_job


def test_a_5xx_storm_skips_steps_then_the_job_finishes(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    # A short reconcile window: the faulted create never happened, so once the
    # window has passed it is planned and sent again (exactly once).
    with make_ctx(max_retries=0, reconcile_skew_s=0, request_timeout_s=1) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "storm", 20))
        sim.state.configure(fault_500_share=1.0)
        reports = {r.step: r for r in run_cycle(ctx)}  # must not raise
        # The create's outcome is unknown (a 500 after sending); listing to
        # reconcile it fails too, so recover is skipped for this cycle.
        assert reports["submit"].details == {"unknown": 1}
        reports = {r.step: r for r in run_cycle(ctx)}
        assert reports["recover"].details == {"skipped_transient": 1}

        sim.state.configure(fault_500_share=0.0)
        report = run_job(ctx, job_id)
    assert report.items == {"succeeded": 20}
    assert max(ledger(sim)["submissions"].values()) == 1


def test_a_408_on_create_defers_it_instead_of_ending_the_run(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    """408 is transient for the client and the cycle alike (it once ended `run`)."""
    with make_ctx(max_retries=1) as ctx:
        new_job(ctx, write_job(tmp_path, "timeouts", 40, max_requests=10))
        sim.state.faults.inject(408, 408)  # the first create, and its one retry
        reports = {r.step: r for r in run_cycle(ctx)}  # must not raise
        assert reports["submit"].details == {"deferred": 1}
        assert ledger(sim)["batches"] == []
        planned = ctx.store.batches([BatchStatus.PLANNED])
        assert len(planned) == 4
        assert "408" in (planned[0].last_error or "")


def test_a_408_storm_while_polling_never_ends_the_run(
    make_ctx: MakeCtx, sim: SimulatorServer, tmp_path: Path
) -> None:
    with make_ctx(max_retries=1) as ctx:
        job_id = new_job(ctx, write_job(tmp_path, "timeouts", 40, max_requests=10))
        assert {r.step: r for r in run_cycle(ctx)}["submit"].details == {"created": 4}
        sim.state.faults.inject(*[408] * 6)  # three list calls, each retried once
        skipped = [
            r.step for _ in range(3) for r in run_cycle(ctx) if r.details.get("skipped_transient")
        ]
        assert skipped == ["poll", "poll", "poll"]
        # Then a storm on every kind of call while `run` drives the job to its end.
        sim.state.configure(fault_408_share=0.3)
        report = run_job(ctx, job_id)
    assert report.items == {"succeeded": 40}
    assert max(ledger(sim)["submissions"].values()) == 1
    assert len(ledger(sim)["batches"]) == 4
