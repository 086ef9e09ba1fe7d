"""End to end on the embedded MiniLM (kept cheap): LoRA learns, and its small bundle
re-attaches to the real base model with bitwise-equal outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tunekit
from tunekit.models import embedded_model_path

POS = [
    "a wonderful, moving film",
    "great acting and a clever story",
    "i loved every minute of it",
    "funny, warm and beautifully made",
    "a superb cast at its best",
    "the best movie of the year",
]
NEG = [
    "a dull, lifeless mess",
    "terrible acting and a silly plot",
    "i hated every minute of it",
    "boring, long and pointless",
    "an awful waste of time",
    "the worst movie of the year",
]
ROWS = [{"text": t, "label": "pos"} for t in POS] + [{"text": t, "label": "neg"} for t in NEG]


@pytest.mark.skipif(
    embedded_model_path() is None, reason="the embedded MiniLM package is not installed"
)
def test_lora_on_minilm_trains_and_reattaches(tmp_path):
    torch.manual_seed(0)
    run = tunekit.finetune(
        "classify",
        data=ROWS * 2,
        model="minilm",
        strategy="lora",
        r=4,
        epochs=3,
        eval_split=0,
        learning_rate=2e-3,
        batch_size=8,
        max_length=24,
        progress=False,
    )
    losses = run.history.column("train_loss")
    assert losses[-1] < losses[0], losses
    assert run.history.info["trainable_percent"] < 1.0
    texts = [r["text"] for r in ROWS]
    accuracy = np.mean([p["label"] == r["label"] for p, r in zip(run.predict(texts), ROWS)])
    assert accuracy > 0.5
    bundle = tmp_path / "lora"
    run.save(bundle)
    assert (bundle / "model.safetensors").stat().st_size < 1_000_000  # adapter + head, not 90 MB
    back = tunekit.load(bundle, device="cpu")
    assert back.backbone["name"] == "minilm"
    assert back.predict(texts) == run.predict(texts)
