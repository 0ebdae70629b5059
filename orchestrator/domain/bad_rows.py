"""Bad rows of one data file, collected while it streams and reported together.

One bad row does not stop the stream: the first :data:`MAX_REPORTED_ROWS` errors are
kept (the rest counted) and raised as one :class:`BadRowsError`, so a single run lists
them all, each as ``file:line: message``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from orchestrator.errors import SpecError

#: Bad rows an error lists one by one; the rest are counted ("... and 5 more bad rows").
MAX_REPORTED_ROWS = 20


class BadRowsError(SpecError):
    """Several rows of one data file are unusable: each is listed, up to a cap.

    ``location`` is the first bad row's ``file:line``, ``rows`` the listed errors and
    ``total`` the number of bad rows in all.
    """

    def __init__(self, summary: str, rows: Sequence[SpecError], total: int) -> None:
        lines = [summary, *_listed(rows)]
        more = total - len(rows)
        if more > 0:
            lines.append(f"... and {more:,} more bad row{'' if more == 1 else 's'}")
        super().__init__("\n".join(lines))
        self.location = rows[0].location if rows else None
        self.rows = tuple(rows)
        self.total = total


def _listed(rows: Sequence[SpecError]) -> Iterator[str]:
    """``file:line: message`` per row; a message the row above had is not repeated
    (a bad ``[request]`` makes every row fail the same way)."""
    previous = None
    for row in rows:
        text = str(row)
        problem = text.removeprefix(f"{row.location}: ") if row.location else text
        if row.location and problem == previous:
            yield f"{row.location}: same problem as the row above"
        else:
            yield text
        previous = problem


class BadRows:
    """The bad rows of one data file, collected while it streams, in flat memory.

    The first ``cap`` errors are kept and the rest only counted; :meth:`raise_if_any`
    raises them as one error. ``note`` is added to the summary line, e.g.
    "nothing was recorded".
    """

    def __init__(
        self, label: str, *, note: str | None = None, cap: int = MAX_REPORTED_ROWS
    ) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.label = label
        self.note = note
        self.cap = cap
        self.count = 0
        self._kept: list[SpecError] = []

    def add(self, error: SpecError) -> None:
        self.count += 1
        if len(self._kept) < self.cap:
            self._kept.append(error)

    def __bool__(self) -> bool:
        return self.count > 0

    def error(self) -> SpecError:
        """Everything collected as one error: one bad row as itself, several as a list
        whose first line says how many and where (one ``file:line: message`` per line after it).
        """
        if self.count == 1:
            return self._kept[0]
        note = f" ({self.note})" if self.note else ""
        summary = f"{self.count:,} bad rows in {self.label}{note}:"
        return BadRowsError(summary, self._kept, self.count)

    def raise_if_any(self) -> None:
        if self.count:
            raise self.error()
