"""A generated corpus with clearly separated themes (sports, cooking, space, finance), for
tests, benchmarks and the docs: topic models must recover the themes (not part of any wheel:
pytest finds it through ``pythonpath = ["benchmarks"]``).

Example::

    docs, gold = make_corpus(per_theme=15, noise=True)
"""

from __future__ import annotations

import random

THEMES = {
    "sports": [
        "football",
        "match",
        "goal",
        "striker",
        "coach",
        "stadium",
        "league",
        "referee",
        "penalty",
        "team",
        "season",
        "championship",
        "goalkeeper",
        "tournament",
        "fans",
        "victory",
    ],
    "cooking": [
        "recipe",
        "oven",
        "flour",
        "sugar",
        "butter",
        "garlic",
        "onion",
        "sauce",
        "bake",
        "kitchen",
        "chef",
        "dough",
        "pepper",
        "simmer",
        "dessert",
    ],
    "space": [
        "rocket",
        "orbit",
        "astronaut",
        "telescope",
        "planet",
        "galaxy",
        "nasa",
        "launch",
        "satellite",
        "moon",
        "mars",
        "spacecraft",
        "star",
        "comet",
        "asteroid",
    ],
    "finance": [
        "stock",
        "market",
        "investor",
        "bank",
        "interest",
        "inflation",
        "bond",
        "shares",
        "dividend",
        "portfolio",
        "economy",
        "trading",
        "currency",
        "profit",
        "earnings",
    ],
}
FILLERS = ["the", "a", "and", "with", "after", "before", "about", "while", "during", "for"]
NOISE = [
    "Xylophone quartz jigsaw vortex whisk.",
    "Purple umbrellas hum quietly beneath wet violins.",
    "Zebra crossings knit woollen lighthouses on Tuesdays.",
]


def make_doc(theme: str, rng: random.Random, n_words: int = 9) -> str:
    """One document of *theme*: its words in random order with filler words between."""
    words = rng.sample(THEMES[theme], n_words)
    out = []
    for w in words:
        out.append(w)
        if rng.random() < 0.5:
            out.append(rng.choice(FILLERS))
    return " ".join(out).capitalize() + "."


def make_corpus(
    per_theme: int = 15, seed: int = 0, noise: bool = False
) -> tuple[list[str], list[str]]:
    """Documents and their gold theme ("noise" for the noise documents), shuffled."""
    rng = random.Random(seed)
    pairs = [(make_doc(t, rng), t) for t in THEMES for _ in range(per_theme)]
    if noise:
        pairs += [(d, "noise") for d in NOISE]
    rng.shuffle(pairs)
    return [d for d, _ in pairs], [t for _, t in pairs]


def purity(topics: list[int], gold: list[str]) -> float:
    """Share of clustered documents whose topic's majority theme is their own theme."""
    from collections import Counter

    by_topic: dict[int, Counter] = {}
    for t, g in zip(topics, gold):
        if t != -1:
            by_topic.setdefault(t, Counter())[g] += 1
    total = sum(sum(c.values()) for c in by_topic.values())
    return sum(c.most_common(1)[0][1] for c in by_topic.values()) / max(total, 1)
