"""Confusion matrices of classification runs: ``run.confusion()`` / ``run.plot_confusion()``
and the CLI's ``--plots`` directory."""

from __future__ import annotations

import random

import numpy as np
import pytest

import tunekit
from tunekit.errors import ConfigError
from tunekit.testing import make_tiny_model

WORDS = {
    "sports": ["goal", "match", "team"],
    "politics": ["vote", "senate", "party"],
    "food": ["bread", "soup", "cake"],
}
FAST = dict(max_length=16, batch_size=8, learning_rate=3e-3, warmup_ratio=0.0, progress=False)


def rows(n=45, seed=0):
    rng = random.Random(seed)
    labels = sorted(WORDS)
    return [
        {
            "text": " ".join(rng.sample(WORDS[labels[i % 3]], 2) + ["the", "news"]),
            "label": labels[i % 3],
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    words = " ".join(w for ws in WORDS.values() for w in ws) + " the news"
    tiny = make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert", [words])
    return tunekit.finetune("classify", data=rows(), model=tiny, epochs=5, eval_split=0, **FAST)


def test_confusion_counts_match_the_predictions(run, tmp_path):
    data = rows(30, seed=1)
    gold, predicted = run.confusion(data)
    assert gold == [r["label"] for r in data]
    assert predicted == [p["label"] for p in run.predict([r["text"] for r in data])]
    accuracy = float(np.mean([g == p for g, p in zip(gold, predicted)]))
    assert accuracy == pytest.approx(run.evaluate(data)["accuracy"])
    path = run.plot_confusion(tmp_path / "plots" / "confusion.png", data)
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    normalized = run.plot_confusion(tmp_path / "n.png", data, normalize="true")
    assert (tmp_path / "n.png").stat().st_size > 1000 and normalized.endswith("n.png")
    with pytest.raises(ConfigError, match="normalize='rows'"):
        run.plot_confusion(tmp_path / "x.png", data, normalize="rows")


def test_not_a_single_label_task_is_refused(run, tmp_path):
    tiny = run.backbone.get("source")
    scores = [{"text": r["text"], "label": 0.5 + (r["label"] == "food")} for r in rows(16)]
    regression = tunekit.finetune(
        "classify", data=scores, model=tiny, epochs=1, eval_split=0, **FAST
    )
    with pytest.raises(ConfigError, match="single-label classification task.*'regression'"):
        regression.plot_confusion(tmp_path / "c.png", scores)
