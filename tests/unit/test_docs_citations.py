"""Every ``§N.M`` cited in the code is a heading of some ``docs/*.md`` file.

Comments under ``orchestrator/`` cite the API notes by section number; this keeps those
numbers pointing at real sections, and keeps the code from citing files that live outside
the repository.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE_DIR = ROOT / "orchestrator"
DOCS_DIR = ROOT / "docs"
CODE_SUFFIXES = frozenset({".py", ".json"})

CITATION = re.compile(r"§([0-9][0-9.]*)")
HEADING = re.compile(r"^#{2,4} §([0-9]+(?:\.[0-9]+)*)\b")
OUTSIDE_PATHS = ("shared/api", "/work/")


def _code_files() -> Iterator[Path]:
    for path in sorted(CODE_DIR.rglob("*")):
        if path.is_file() and path.suffix in CODE_SUFFIXES:
            yield path


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    yield from enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)


def _citations() -> Iterator[tuple[str, str]]:
    """``(number, "file:line")`` for every citation in the code."""
    for path in _code_files():
        where = path.relative_to(ROOT).as_posix()
        for number, line in _lines(path):
            for match in CITATION.finditer(line):
                yield match.group(1).rstrip("."), f"{where}:{number}"


def _headings() -> set[str]:
    numbers: set[str] = set()
    for path in sorted(DOCS_DIR.glob("*.md")):
        for _, line in _lines(path):
            match = HEADING.match(line)
            if match:
                numbers.add(match.group(1))
    return numbers


def test_every_cited_section_is_a_heading() -> None:
    headings = _headings()
    assert headings, f"no '## §N' headings found in {DOCS_DIR}/*.md"
    citations = list(_citations())
    assert citations, f"no § citations found under {CODE_DIR}"
    unresolved = [f"{where}: §{number}" for number, where in citations if number not in headings]
    assert not unresolved, "citations with no matching docs/ heading:\n" + "\n".join(unresolved)


def test_code_cites_no_path_outside_the_repository() -> None:
    offending = [
        f"{path.relative_to(ROOT).as_posix()}:{number}: {line.strip()}"
        for path in _code_files()
        for number, line in _lines(path)
        if any(fragment in line for fragment in OUTSIDE_PATHS)
    ]
    assert not offending, "paths outside the repository (cite docs/ instead):\n" + "\n".join(
        offending
    )
