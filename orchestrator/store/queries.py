"""The job store's one facade: every named operation, grouped by aggregate.

The only place that builds SQL is ``store/``; each aggregate has its module
(``jobs``, ``planning``, ``batches``, ``adoption``, ``results``, ``reports``, ``meta``) and
shares transactions, lease predicates and converters through ``_sql``.
Callers use :class:`Store` alone.
"""

from __future__ import annotations

from orchestrator.store.adoption import AdoptionOps
from orchestrator.store.batches import BatchOps
from orchestrator.store.engine import make_engine, require_head
from orchestrator.store.jobs import JobOps
from orchestrator.store.meta import MetaOps
from orchestrator.store.planning import PlanningOps
from orchestrator.store.reports import ReportOps
from orchestrator.store.results import ResultOps


class Store(JobOps, PlanningOps, BatchOps, AdoptionOps, ResultOps, ReportOps, MetaOps):
    """The SQL job store behind named operations."""

    @classmethod
    def open(cls, url: str, *, check_head: bool = True) -> Store:
        """Connect to ``url``; refuse a store whose schema is not at the head revision."""
        engine = make_engine(url)
        if check_head:
            try:
                require_head(engine)
            except Exception:
                engine.dispose()
                raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()


__all__ = ["Store"]
