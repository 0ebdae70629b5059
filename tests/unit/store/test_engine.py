"""The SQLite store's own settings: what a new store is made with, and that a store
made before (other settings) keeps them and goes on working."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from orchestrator.store.engine import SQLITE_PAGE_SIZE, make_engine, upgrade
from orchestrator.store.queries import Store


def _pragma(path: Path, name: str) -> object:
    raw = sqlite3.connect(path)
    try:
        return raw.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        raw.close()


def _new_store(path: Path) -> None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def test_a_new_sqlite_store_has_16_kib_pages_and_a_write_ahead_log(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    _new_store(path)

    assert SQLITE_PAGE_SIZE == 16_384
    assert _pragma(path, "page_size") == SQLITE_PAGE_SIZE
    assert _pragma(path, "journal_mode") == "wal"


def test_a_store_made_with_4_kib_pages_keeps_them_and_takes_writes(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _new_store(path)
    raw = sqlite3.connect(path, isolation_level=None)
    try:  # the page size of a store made by an earlier version (SQLite's default)
        raw.execute("PRAGMA journal_mode=DELETE")
        raw.execute("PRAGMA page_size=4096")
        raw.execute("VACUUM")
        raw.execute("PRAGMA journal_mode=WAL")
    finally:
        raw.close()
    assert _pragma(path, "page_size") == 4096

    store = Store.open(f"sqlite:///{path}")
    try:
        tag = store.store_tag()  # made (written) on first use
        assert store.store_tag() == tag
    finally:
        store.close()

    assert _pragma(path, "page_size") == 4096
    assert _pragma(path, "integrity_check") == "ok"
