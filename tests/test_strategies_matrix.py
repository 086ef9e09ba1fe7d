"""Every registered strategy × ``classify`` on a tiny model: the loss falls, and a saved
bundle loads back to bitwise-equal outputs (head, adapter and mix weights included)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tunekit
from tunekit.inference import compute_outputs
from tunekit.testing import make_tiny_model

POS = [
    "a good film",
    "great acting and story",
    "i loved it",
    "wonderful and fun",
    "superb cast",
    "really good fun",
]
NEG = [
    "a bad film",
    "terrible acting",
    "i hated it",
    "boring and dull",
    "awful plot",
    "really bad mess",
]
ROWS = ([{"text": t, "label": "pos"} for t in POS] + [{"text": t, "label": "neg"} for t in NEG]) * 2

#: (strategy, options, stores the whole encoder?)
MATRIX = [
    ("full", {}, True),
    ("full", {"lr_decay": 0.8}, True),
    ("frozen", {}, False),
    ("frozen", {"cache_features": False, "head": "mlp", "hidden": [16]}, False),
    ("lora", {"r": 4}, False),
    ("peft", {"method": "ia3"}, False),
    ("peft", {"method": "adalora", "r": 2, "init_r": 4}, False),
    ("peft", {"method": "prefix", "num_virtual_tokens": 4}, False),
    ("layer-mix", {}, False),
    ("layer-mix", {"cache_features": True}, False),
    ("layer-mix", {"train_encoder": True}, True),
    ("top-k", {"k": 1}, False),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert", [r["text"] for r in ROWS])


def logits(run, texts):
    records = run.task.parse_inputs(texts)
    features = run.task.encode(records, run.tokenizer, max_length=16, with_labels=False)
    outputs, _ = compute_outputs(run.model, run.task, run.tokenizer, features, batch_size=8)
    return np.stack([o["logits"] for o in outputs])


def train(model, strategy, **options):
    torch.manual_seed(0)  # the head's initialisation
    return tunekit.finetune(
        "classify",
        data=ROWS,
        model=model,
        strategy=strategy,
        epochs=8,
        eval_split=0,
        learning_rate=1e-2,
        max_length=16,
        batch_size=8,
        progress=False,
        **options,
    )


def test_every_built_in_strategy_is_in_the_matrix():
    built_in = {
        name
        for name in tunekit.list_strategies()
        if tunekit.get_strategy(name).__module__.startswith("tunekit.strategies.")
    }
    assert built_in >= {"full", "frozen", "lora", "peft", "layer-mix", "top-k"}
    assert built_in <= {s for s, _, _ in MATRIX}


@pytest.mark.parametrize(
    ("strategy", "options", "whole"),
    MATRIX,
    ids=lambda v: str(v) if not isinstance(v, bool) else "",
)
def test_strategy_trains_classify_and_round_trips(tiny, tmp_path, strategy, options, whole):
    run = train(tiny, strategy, **options)
    losses = run.history.column("train_loss")
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    info = run.history.info
    assert 0 < info["trainable_params"] <= info["total_params"]
    assert info["trainable_percent"] == pytest.approx(
        100 * info["trainable_params"] / info["total_params"], abs=1e-3
    )
    texts = [r["text"] for r in ROWS[:12]]
    before = logits(run, texts)
    bundle = run.save(tmp_path / "bundle")
    meta = json.loads((tmp_path / "bundle" / "tunekit.json").read_text())
    assert meta["strategy"]["stores_encoder"] is whole
    if not whole:
        assert len(meta["backbone"]["weights_sha256"]) == 64
    back = tunekit.load(bundle, device="cpu")
    assert back.strategy.name == strategy
    np.testing.assert_array_equal(logits(back, texts), before)
    assert back.predict(texts) == run.predict(texts)


@pytest.mark.parametrize("strategy", ["frozen", "lora", "top-k", "layer-mix"])
def test_small_bundles_hold_only_trained_tensors(tiny, tmp_path, strategy):
    from safetensors.torch import load_file

    run = train(tiny, strategy)
    run.save(tmp_path / "b")
    stored = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert any(k.startswith("head.") for k in stored)  # the head is never lost
    encoder_keys = [k for k in stored if k.startswith("encoder.")]
    if strategy in ("frozen", "layer-mix"):
        assert not encoder_keys
    elif strategy == "lora":
        assert encoder_keys and all("lora_" in k for k in encoder_keys)
    else:  # top-k, k=2 of 2 layers: the layers, never the embeddings
        assert encoder_keys and not any("embeddings" in k for k in encoder_keys)
    full = sum(v.numel() for v in run.model.state_dict().values())
    assert sum(v.numel() for v in stored.values()) < full
