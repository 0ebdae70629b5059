"""A fresh, migrated store per test (the `store` fixture of the store and step tests), on
SQLite and on PostgreSQL (`store_url`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.store.queries import Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()
