"""Bundles of the strategies: re-attaching to the base, refusing another base, merged
standalone bundles, and checkpoints that hold everything to resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import tunekit
from tunekit.errors import BundleError, ConfigError
from tunekit.testing import make_tiny_model

POS = ["a good film", "great acting", "i loved it", "wonderful and fun"]
NEG = ["a bad film", "terrible acting", "i hated it", "boring and dull"]
ROWS = ([{"text": t, "label": "pos"} for t in POS] + [{"text": t, "label": "neg"} for t in NEG]) * 2
TEXTS = POS + NEG


def train(model, strategy, **options):
    torch.manual_seed(0)
    options = {
        "epochs": 3,
        "eval_split": 0,
        "learning_rate": 1e-2,
        "max_length": 16,
        "batch_size": 8,
        **options,
    }
    return tunekit.finetune(
        "classify", data=ROWS, model=model, strategy=strategy, progress=False, **options
    )


def probabilities(run):
    return np.array([[p["probabilities"][k] for k in ("neg", "pos")] for p in run.predict(TEXTS)])


@pytest.fixture
def base(tmp_path):
    return make_tiny_model(tmp_path / "base", TEXTS)


@pytest.mark.parametrize("strategy", ["lora", "frozen", "top-k"])
def test_loading_onto_a_different_base_is_refused(base, tmp_path, strategy):
    run = train(base, strategy)
    run.save(tmp_path / "bundle")
    make_tiny_model(base, TEXTS, seed=1)  # same place, same shapes, other weights
    with pytest.raises(BundleError, match=r"weights sha256.*same base model"):
        tunekit.load(tmp_path / "bundle")


def test_missing_base_is_a_bundle_error(base, tmp_path):
    train(base, "lora").save(tmp_path / "bundle")
    shutil.rmtree(base)
    with pytest.raises(BundleError, match="re-attaches to base model"):
        tunekit.load(tmp_path / "bundle")


@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        ("lora", {}),
        ("peft", {"method": "ia3"}),
        ("frozen", {}),
        ("layer-mix", {}),
        ("top-k", {"k": 1}),
    ],
)
def test_merged_bundle_is_standalone_and_equal(base, tmp_path, strategy, options):
    # fp32: folding an adapter into the weights is exact to float precision; under bf16
    # autocast (precision="auto" on a CPU with AMX) the merged weights round differently
    run = train(base, strategy, precision="fp32", **options)
    expected = probabilities(run)
    run.save(tmp_path / "merged", merged=True)
    meta = json.loads((tmp_path / "merged" / "tunekit.json").read_text())
    assert meta["strategy"]["stores_encoder"] is True
    assert meta["strategy"]["merged_from"] == strategy
    shutil.rmtree(base)  # a standalone bundle needs no base model
    back = tunekit.load(tmp_path / "merged", device="cpu")
    np.testing.assert_allclose(probabilities(back), expected, atol=1e-5)
    if strategy in ("lora", "peft"):
        assert back.strategy.name == "full"
        assert not hasattr(back.model.encoder, "peft_config")  # adapter folded into the weights
    if strategy == "layer-mix":
        assert back.layer_weights == pytest.approx(run.layer_weights)


def test_merge_option_saves_merged_and_prefix_cannot_merge(base, tmp_path):
    run = train(base, "lora", merge=True)
    run.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "tunekit.json").read_text())["strategy"]["name"] == "full"
    prefix = train(base, "peft", method="prefix", num_virtual_tokens=2, epochs=1)
    with pytest.raises(ConfigError, match="cannot be merged"):
        prefix.save(tmp_path / "p", merged=True)
    assert not (tmp_path / "p").exists()
    with pytest.raises(tunekit.TunekitError, match="merged=True"):
        prefix.save(tmp_path / "p", merge=True)


def test_merge_that_changes_outputs_is_refused(base, tmp_path, monkeypatch):
    from tunekit.strategies import adapters

    run = train(base, "lora", epochs=1)
    monkeypatch.setattr(adapters, "MERGE_TOLERANCE", 0.0)  # any rounding now counts as a change
    with pytest.raises(BundleError, match="refusing to write a merged bundle"):
        run.save(tmp_path / "m", merged=True)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        ("lora", {}),
        ("peft", {"method": "adalora", "r": 2, "init_r": 4}),
        ("frozen", {}),
        ("layer-mix", {}),
        ("top-k", {"k": 1}),
        ("full", {"lr_decay": 0.9}),
    ],
)
def test_checkpoint_holds_everything_to_resume(base, tmp_path, strategy, options):
    out = tmp_path / "out"
    keep = {"keep_checkpoints_after_training": True}  # resume from the checkpoint itself
    first = train(base, strategy, epochs=2, output_dir=out, **keep, **options)
    resumed = train(
        base, strategy, epochs=2, output_dir=out, resume=True, **keep, **options
    )  # nothing left to train
    np.testing.assert_array_equal(probabilities(resumed), probabilities(first))
    assert resumed.history.rows == first.history.rows
