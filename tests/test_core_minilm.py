"""End to end on the embedded MiniLM: ``classify`` (strategy ``full``) from a CSV file to
accuracy clearly above chance on held-out data, then save → load → same predictions."""

from __future__ import annotations

import csv
import random

import pytest

import tunekit
from tunekit.models import embedded_model_path

SUBJECTS = [
    "the film",
    "this movie",
    "the story",
    "the acting",
    "the ending",
    "the soundtrack",
    "the cast",
    "the plot",
]
POSITIVE = [
    "wonderful",
    "delightful",
    "brilliant",
    "moving",
    "charming",
    "superb",
    "beautiful",
    "excellent",
    "fun",
]
NEGATIVE = [
    "terrible",
    "boring",
    "awful",
    "dreadful",
    "tedious",
    "pointless",
    "dull",
    "horrible",
    "painful",
]
FRAMES = ["{s} was {a}", "{s} is {a}", "honestly, {s} felt {a}", "i thought {s} was {a}"]


def sentences(adjectives, label, n, rng):
    return [
        {
            "text": rng.choice(FRAMES).format(s=rng.choice(SUBJECTS), a=rng.choice(adjectives)),
            "label": label,
        }
        for _ in range(n)
    ]


@pytest.mark.skipif(
    embedded_model_path() is None, reason="the embedded MiniLM package is not installed"
)
def test_classify_on_embedded_minilm(tmp_path):
    rng = random.Random(0)
    # Training adjectives and held-out adjectives differ: the model must generalise.
    train = sentences(POSITIVE[:6], "positive", 60, rng) + sentences(
        NEGATIVE[:6], "negative", 60, rng
    )
    held_out = sentences(POSITIVE[6:], "positive", 20, rng) + sentences(
        NEGATIVE[6:], "negative", 20, rng
    )
    rng.shuffle(train)
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["review", "sentiment"])
        writer.writeheader()
        writer.writerows({"review": r["text"], "sentiment": r["label"]} for r in train)

    tunekit.plugins.reset()
    run = tunekit.finetune(
        task="classify",
        data=path,
        epochs=2,
        batch_size=16,
        learning_rate=2e-4,
        max_length=32,
        progress=False,
    )
    assert run.backbone["name"] == "minilm"
    assert len(run.history) == 2 and run.history.columns[:4] == [
        "epoch",
        "step",
        "train_loss",
        "eval_loss",
    ]
    assert run.metrics["accuracy"] >= 0.8, run.history  # eval_split=0.1 of the CSV (12 texts)
    held = run.evaluate(held_out)
    assert held["accuracy"] >= 0.85, held  # chance is 0.5
    assert held["mcc"] > 0.5

    texts = ["what a wonderful film", "a dull, lifeless mess", "the cast was excellent"]
    predictions = run.predict(texts)
    assert [p["label"] for p in predictions] == ["positive", "negative", "positive"]
    loaded = tunekit.load(run.save(tmp_path / "bundle"))
    assert loaded.predict(texts) == predictions
