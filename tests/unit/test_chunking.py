from __future__ import annotations

import pytest

from orchestrator.chunking import chunked


@pytest.mark.parametrize(
    ("n", "size", "sizes"),
    [(0, 3, []), (1, 3, [1]), (3, 3, [3]), (7, 3, [3, 3, 1]), (5, 1, [1, 1, 1, 1, 1])],
)
def test_chunks_keep_order_and_bound_size(n: int, size: int, sizes: list[int]) -> None:
    chunks = list(chunked(iter(range(n)), size))
    assert [len(c) for c in chunks] == sizes
    assert [x for c in chunks for x in c] == list(range(n))


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk size"):
        list(chunked([1], 0))
