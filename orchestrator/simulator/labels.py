"""Label questions: "positive, negative or neutral", "Answer A, B or C", "one of: x, y, z".

When the prompt offers labels the fake model answers with exactly one of them: by keyword
sentiment for positive/negative(/neutral) so demos look sensible, otherwise by a seeded hash.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .ids import digest64

_ITEM = r"[\"'`]?([A-Za-z0-9][\w-]*)[\"'`]?"
#: "one of: x, y, z" / "one of [x, y, z]" / "one of x, y or z"
_ONE_OF = re.compile(r"\bone of\s*:?\s*\[?([\w\s,'\"`/|-]+)", re.IGNORECASE)
#: "positive, negative or neutral", "A, B, or C"
_LIST = re.compile(rf"{_ITEM}((?:\s*,\s*{_ITEM})+),?\s+or\s+{_ITEM}", re.IGNORECASE)
#: "Answer yes or no", "reply with true or false"
_PAIR = re.compile(
    rf"\b(?:answer|reply|respond|choose|pick|select|classify|label|output|say)\b[^\n.?!]*?\b{_ITEM}\s+or\s+{_ITEM}",
    re.IGNORECASE,
)
#: A sentence that is only "Positive or negative?"
_BARE_PAIR = re.compile(rf"(?:^|[.!?:\n])\s*{_ITEM}\s+or\s+{_ITEM}\s*[?.]?\s*(?:$|\n)")
_SPLIT = re.compile(r"\s*(?:,|\bor\b|/|\|)\s*", re.IGNORECASE)
_WORD = re.compile(r"[a-z']+")

POSITIVE_WORDS = frozenset(
    "great love loved loves excellent amazing awesome good wonderful fantastic perfect happy "
    "best recommend recommended nice delighted superb brilliant pleased works".split()
)
NEGATIVE_WORDS = frozenset(
    "broken terrible refund awful bad worst hate hated poor disappointed disappointing "
    "horrible useless defective crashed crashes missing late rude scam waste never".split()
)


@lru_cache(maxsize=4096)
def find_labels(text: str) -> tuple[str, ...]:
    """The labels the prompt asks to choose from, or () when it offers none."""
    match = _ONE_OF.search(text)
    if match:
        labels = _clean(_SPLIT.split(match.group(1)))
        if len(labels) >= 2:
            return labels
    match = _LIST.search(text)
    if match:
        middle = re.findall(_ITEM, match.group(2))
        return _clean([match.group(1), *middle, match.group(match.lastindex or 0)])
    match = _PAIR.search(text) or _BARE_PAIR.search(text)
    return _clean([match.group(1), match.group(2)]) if match else ()


def _clean(items: list[str]) -> tuple[str, ...]:
    labels = [item.strip(" \"'`[]()") for item in items]
    labels = [label for label in labels if label and len(label) <= 40 and len(label.split()) <= 3]
    return tuple(dict.fromkeys(labels))


def choose_label(labels: tuple[str, ...], text: str, seed: int) -> str:
    """Keyword sentiment for sentiment labels, otherwise a seeded pick."""
    by_name = {label.lower(): label for label in labels}
    if "positive" in by_name and "negative" in by_name:
        score = sentiment(text)
        if score > 0:
            return by_name["positive"]
        if score < 0:
            return by_name["negative"]
        if "neutral" in by_name:
            return by_name["neutral"]
    return labels[digest64(seed, "label", *labels) % len(labels)]


def sentiment(text: str) -> int:
    """Positive minus negative keyword count."""
    words = _WORD.findall(text.lower())
    return sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words)
