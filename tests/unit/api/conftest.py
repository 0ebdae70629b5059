from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.api.fakes import ClientFactory


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    factory = ClientFactory()
    yield factory
    factory.close_all()
