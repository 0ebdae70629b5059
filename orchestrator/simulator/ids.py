"""Identifiers and timestamps in the API's formats (§0, §1.5, §2.1)."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime

#: Bitcoin base58; the alphabet is in ASCII order, so fixed-width codes sort like numbers.
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


#: Every two-digit base58 string, so encoding takes half the divisions (results are hot).
_PAIRS = [a + b for a in BASE58 for b in BASE58]


def base58(number: int, width: int) -> str:
    """Encode ``number`` as exactly ``width`` base58 digits (wrapping if it is too big)."""
    pairs = []
    for _ in range(width // 2):
        number, rest = divmod(number, 3364)
        pairs.append(_PAIRS[rest])
    if width % 2:
        pairs.append(BASE58[number % 58])
    return "".join(reversed(pairs))


def _joined(parts: tuple[str | bytes | int, ...]) -> bytes:
    return b"\x1f".join(p if isinstance(p, bytes) else str(p).encode() for p in parts)


def digest64(*parts: str | bytes | int) -> int:
    """A stable 64-bit hash of the parts (never Python's salted ``hash``)."""
    return int.from_bytes(hashlib.blake2b(_joined(parts), digest_size=8).digest(), "little")


def digest128(*parts: str | bytes | int) -> int:
    """A stable 128-bit hash of the parts."""
    return int.from_bytes(hashlib.blake2b(_joined(parts), digest_size=16).digest(), "little")


def unit_interval(*parts: str | bytes | int) -> float:
    """A deterministic draw in [0, 1) from the parts."""
    return digest64(*parts) / 2**64


def batch_id(created_at: float, sequence: int, rng: random.Random) -> str:
    """``msgbatch_01`` + 22 base58 chars that sort in creation order (§0).

    10 chars of creation microseconds, 3 of a sequence number (ties on equal
    timestamps), 9 random: lexicographic order equals creation order.
    """
    micros = round(created_at * 1_000_000)
    tail = base58(rng.getrandbits(53), 9)
    return f"msgbatch_01{base58(micros, 10)}{base58(sequence, 3)}{tail}"


def message_id(*parts: str | bytes | int) -> str:
    """``msg_01`` + 22 base58 chars, derived from the parts so re-downloads match."""
    return "msg_01" + base58(digest128("msg", *parts), 22)


def tool_use_id(*parts: str | bytes | int) -> str:
    """``toolu_01`` + 22 base58 chars."""
    return "toolu_01" + base58(digest128("toolu", *parts), 22)


def request_id(rng: random.Random) -> str:
    """``req_`` + 24 chars, e.g. ``req_011CSHoEeqs5C35K2UUqR7Fy`` (§1.5)."""
    return "req_011" + base58(rng.getrandbits(128), 21)


def rfc3339(timestamp: float) -> str:
    """RFC 3339 UTC with microseconds and ``Z``: ``2024-09-24T18:37:24.100435Z`` (§2.1)."""
    moment = datetime.fromtimestamp(round(timestamp * 1_000_000) / 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
