"""Encoder adaptation before topic modeling (adapt="simcse" / "mlm") through the shared Trainer."""

from __future__ import annotations

import numpy as np
import pytest
from topic_corpus import make_corpus

import tunekit
from tunekit.errors import ConfigError
from tunekit.plugins import reset
from tunekit.testing import make_tiny_model

DOCS, GOLD = make_corpus(per_theme=10, seed=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(
        tmp_path_factory.mktemp("tiny") / "model", DOCS, max_position_embeddings=64
    )


def fit(model, **options):
    base = dict(
        task="topics",
        data=DOCS,
        model=model,
        n_topics=4,
        reduction="pca",
        max_length=32,
        batch_size=16,
        progress=False,
    )
    return tunekit.finetune(**{**base, **options})


def test_simcse_adaptation_trains_and_round_trips(tiny, tmp_path):
    run = fit(tiny, adapt="simcse", epochs=4, learning_rate=1e-3)
    adapt_rows = [r for r in run.history if r.get("stage") == "adapt-simcse"]
    assert len(adapt_rows) == 4
    assert adapt_rows[-1]["train_loss"] < adapt_rows[0]["train_loss"]  # the contrastive loss falls
    assert run.history[-1]["stage"] == "topics"
    assert run.backbone["adapted"] == "simcse" and run.strategy.stores_encoder
    plain = fit(tiny)
    assert not np.allclose(run.embed(DOCS[:4]), plain.embed(DOCS[:4]))  # the encoder changed
    run.save(tmp_path / "adapted")
    loaded = tunekit.load(tmp_path / "adapted", device="cpu")
    assert loaded.topics_ == run.topics_
    new_docs, _ = make_corpus(per_theme=2, seed=11)
    assert loaded.transform(new_docs)[0] == run.transform(new_docs)[0]
    assert np.allclose(loaded.embed(new_docs), run.embed(new_docs), atol=1e-5)
    # a saved bundle is a backbone too: its (adapted) encoder embeds the next topic model
    again = fit(str(tmp_path / "adapted"))
    assert np.allclose(again.embeddings, run.embeddings, atol=1e-5)
    assert again.topics_ == run.topics_


def test_simcse_with_lora_and_frozen_refused(tiny, tmp_path):
    run = fit(tiny, adapt="simcse", epochs=1, strategy="lora", learning_rate=1e-3)
    assert run.history.info["trainable_percent"] < 100  # only the adapter trained
    assert run.strategy.name == "lora" and not run.strategy.stores_encoder
    full = fit(tiny, adapt="simcse", epochs=1, learning_rate=1e-3)
    lora_size = (
        (tmp_path / "lora").joinpath("model.safetensors") if run.save(tmp_path / "lora") else None
    )
    full.save(tmp_path / "full")
    assert lora_size.stat().st_size < (tmp_path / "full" / "model.safetensors").stat().st_size / 2
    loaded = tunekit.load(tmp_path / "lora", device="cpu")  # re-attaches the adapter to the base
    assert loaded.strategy.name == "lora"
    assert loaded.transform(DOCS[:8])[0] == run.transform(DOCS[:8])[0]
    assert np.allclose(loaded.embed(DOCS[:8]), run.embed(DOCS[:8]), atol=1e-5)
    with pytest.raises(ConfigError, match="freezes it"):
        fit(tiny, adapt="simcse", strategy="frozen")


def test_mlm_adaptation_uses_fill_mask(tiny, monkeypatch):
    pytest.importorskip("tunekit_fill_mask")
    run = fit(tiny, adapt="mlm", epochs=1)
    assert [r["stage"] for r in run.history][:1] == ["adapt-mlm"]
    monkeypatch.setenv("TUNEKIT_DISABLE_PLUGINS", "fill-mask")
    reset()
    try:
        with pytest.raises(ConfigError, match="pip install tunekit-fill-mask"):
            fit(tiny, adapt="mlm", epochs=1)
    finally:
        monkeypatch.delenv("TUNEKIT_DISABLE_PLUGINS")
        reset()
