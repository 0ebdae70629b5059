"""Generate the demo dataset: short, varied product reviews (deterministic).

    python jobs/review-sentiment/make_reviews.py            # writes reviews.jsonl here
    python jobs/review-sentiment/make_reviews.py --format csv --out /tmp/reviews.csv

The same seed and count always give the same bytes. Some reviews carry non-ASCII
text, emoji, quotes, commas and newlines, so JSON and CSV escaping get exercised.
Each row is ``{"id": "r00001", "product": ..., "text": ...}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from collections.abc import Iterator
from pathlib import Path

SEED = 20260822
COUNT = 3000
HERE = Path(__file__).resolve().parent

PRODUCTS = [
    "wireless earbuds",
    "espresso machine",
    "hiking boots",
    "yoga mat",
    "4K monitor",
    "air fryer",
    "mechanical keyboard",
    "electric kettle",
    "backpack",
    "desk lamp",
    "phone case",
    "robot vacuum",
    "running shoes",
    "cast-iron skillet",
    "smart watch",
    "Bluetooth speaker",
    "office chair",
    "water bottle",
    "crème brûlée torch",
    "café grinder",
    "jalapeño hot sauce",
    "über-soft pillow",
    "tent (2-person)",
    "kids' tablet",
    '12" laptop sleeve',
    "noise-cancelling headphones",
]
POSITIVE = [
    "Absolutely love this {p}.",
    "Best {p} I've owned, hands down.",
    "Works exactly as described, and the {p} arrived early.",
    "Five stars: sturdy, quiet, and easy to clean.",
    'My partner said "finally, a {p} that works" and I agree.',
    "Great value for the price, would buy again.",
    "Setup took two minutes. Brilliant.",
    "Exceeded my expectations in every way",
]
NEGATIVE = [
    "Broke after a week.",
    "The {p} stopped working, and support never replied.",
    "Terrible quality; returned it the next day.",
    "Not as advertised: it's smaller, louder, and flimsier.",
    "Do NOT buy this {p}.",
    'Arrived damaged, with a "gift" of scratches all over.',
    "Waste of money, honestly",
    "Overheats, rattles, and the app crashes constantly.",
]
NEUTRAL = [
    "It's a {p}. Does the job.",
    "Average {p}; nothing special, nothing wrong.",
    "Arrived on Tuesday, as scheduled.",
    "Fine for the price, I guess.",
    "Color is slightly different from the photo, otherwise as expected.",
    "Haven't used it much yet, will update later.",
    "Some things are good, some are not",
]
EXTRAS = [
    " 👍",
    " 😡",
    " 🙂",
    " ☕",
    " 🔥",
    " (bought it for my café)",
    " Naïve of me to expect more.",
    " Size: M, color: blue",
    ' He called it "meh".',
    " 10/10, would recommend",
    " 3/5",
]


def make_reviews(count: int = COUNT, seed: int = SEED) -> Iterator[dict[str, str]]:
    """Yield ``count`` reviews; the same arguments always give the same reviews."""
    rng = random.Random(seed)
    for n in range(1, count + 1):
        product = rng.choice(PRODUCTS)
        yield {"id": f"r{n:05d}", "product": product, "text": _review_text(rng, product)}


def _review_text(rng: random.Random, product: str) -> str:
    mood = rng.choices([POSITIVE, NEGATIVE, NEUTRAL], weights=[5, 3, 2])[0]
    sentences = [s.format(p=product) for s in rng.sample(mood, k=rng.randint(1, 3))]
    separator = "\n" if rng.random() < 0.05 else " "  # a few multi-line reviews
    text = separator.join(sentences)
    if rng.random() < 0.25:
        text += rng.choice(EXTRAS)
    return text


def write_jsonl(rows: Iterator[dict[str, str]], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_csv(rows: Iterator[dict[str, str]], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["id", "product", "text"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or HERE / f"reviews.{args.format}"
    writer = write_csv if args.format == "csv" else write_jsonl
    writer(make_reviews(args.count, args.seed), out)


if __name__ == "__main__":
    main()
