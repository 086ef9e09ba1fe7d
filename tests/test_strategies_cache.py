"""The frozen-encoder feature cache and the layer mix's exposed weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tunekit
from tunekit.testing import make_tiny_model

POS = ["a good film", "great acting and story", "i loved it", "wonderful and fun"]
NEG = ["a bad film", "terrible acting", "i hated it", "boring and dull , really"]
ROWS = ([{"text": t, "label": "pos"} for t in POS] + [{"text": t, "label": "neg"} for t in NEG]) * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert", [r["text"] for r in ROWS])


def train(model, strategy, **options):
    torch.manual_seed(0)
    options = {
        "epochs": 3,
        "eval_split": 0.25,
        "learning_rate": 1e-2,
        "max_length": 16,
        "batch_size": 4,
        **options,
    }
    return tunekit.finetune(
        "classify", data=ROWS, model=model, strategy=strategy, progress=False, **options
    )


def curves(run):
    return np.array([[r["train_loss"], r["eval_loss"], r["accuracy"]] for r in run.history.rows])


@pytest.mark.parametrize(
    ("strategy", "cached", "uncached"),
    [
        ("frozen", {}, {"cache_features": False}),
        ("layer-mix", {"cache_features": True}, {}),
    ],
)
def test_cached_training_equals_uncached(tiny, strategy, cached, uncached):
    a, b = train(tiny, strategy, **cached), train(tiny, strategy, **uncached)
    np.testing.assert_allclose(curves(a), curves(b), rtol=1e-5, atol=1e-6)
    texts = [r["text"] for r in ROWS[:8]]
    for x, y in zip(a.predict(texts), b.predict(texts)):
        assert x["label"] == y["label"] and x["score"] == pytest.approx(y["score"], abs=1e-5)


def test_disk_cache_is_reused_and_keyed_by_inputs(tiny, tmp_path, monkeypatch):
    from tunekit.taskmodel import TaskModel

    cache = tmp_path / "cache"
    first = train(tiny, "frozen", cache_dir=cache)
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2  # train and eval features
    calls = []
    real = TaskModel.cacheable_features
    monkeypatch.setattr(
        TaskModel, "cacheable_features", lambda self, batch: calls.append(1) or real(self, batch)
    )
    second = train(tiny, "frozen", cache_dir=cache)
    assert calls == []  # the encoder did not run again
    np.testing.assert_array_equal(curves(first), curves(second))
    train(tiny, "frozen", cache_dir=cache, max_length=5)  # truncated: other token ids, a new entry
    assert calls and len(list(cache.iterdir())) == 4


def test_layer_mix_weights_are_learned_exposed_and_plotted(tiny, tmp_path):
    run = train(tiny, "layer-mix", learning_rate=5e-2)
    weights = run.layer_weights
    assert len(weights) == 3  # embeddings + 2 layers
    assert sum(weights) == pytest.approx(1.0)
    assert max(weights) - min(weights) > 1e-3  # moved away from the uniform start
    assert train(tiny, "frozen").layer_weights is None
    png = tmp_path / "curve.png"
    run.plot(png)
    import matplotlib.image

    assert (
        matplotlib.image.imread(png).shape[1] >= 1400
    )  # three panels: loss, metric, layer weights
