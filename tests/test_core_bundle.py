"""Bundles: a save/load round trip gives bitwise-equal predictions; an altered, partial,
padded or unsafe bundle is refused with :class:`BundleError`; writes are atomic."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import tunekit
from tunekit import bundle as bundle_mod
from tunekit.errors import BundleError, TunekitError
from tunekit.inference import compute_outputs
from tunekit.testing import make_tiny_model

GOOD = ["good", "great", "fine", "superb", "lovely"]
BAD = ["bad", "awful", "poor", "dull", "boring"]


def rows(n=32, seed=0):
    rng = random.Random(seed)
    return [
        {
            "text": " ".join(rng.sample(GOOD if i % 2 else BAD, 3) + ["film"]),
            "label": "pos" if i % 2 else "neg",
        }
        for i in range(n)
    ]


TEXTS = ["good great film", "awful dull film", "a lovely but poor film", "fine"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tunekit.plugins.reset()
    root = tmp_path_factory.mktemp("bundle")
    tiny = make_tiny_model(root / "tiny", GOOD + BAD + ["film", "a", "but"])
    run = tunekit.finetune(
        task="classify",
        data=rows(),
        model=tiny,
        epochs=2,
        eval_split=0.25,
        max_length=16,
        batch_size=8,
        learning_rate=2e-3,
        class_weights="balanced",
        progress=False,
    )
    path = run.save(root / "saved")
    return run, path


@pytest.fixture
def copy(trained, tmp_path):
    """A fresh copy of the saved bundle to damage."""
    import shutil

    return shutil.copytree(trained[1], tmp_path / "copy")


def logits(run, texts):
    records = run.task.parse_inputs(texts)
    features = run.task.encode(
        records, run.tokenizer, max_length=run.training.max_length, with_labels=False
    )
    outputs, _ = compute_outputs(run.model, run.task, run.tokenizer, features, batch_size=8)
    return np.stack([o["logits"] for o in outputs])


def test_round_trip_is_bitwise_equal(trained):
    run, path = trained
    loaded = tunekit.load(path, device="cpu")
    assert loaded.predict(TEXTS) == run.predict(TEXTS)
    assert np.array_equal(logits(loaded, TEXTS), logits(run, TEXTS))
    before, after = run.model.state_dict(), loaded.model.state_dict()
    assert before.keys() == after.keys() and all(
        torch.equal(before[k], after[k].cpu()) for k in before
    )
    assert loaded.labels == run.labels == ("neg", "pos")
    assert loaded.task.weights == run.task.weights  # class weights travel in the task state
    assert loaded.history.rows == json.loads(json.dumps(run.history.rows))
    assert loaded.metrics == pytest.approx(run.metrics)
    assert loaded.training.max_length == 16 and loaded.strategy.name == "full"
    assert loaded.evaluate(rows(8, seed=3)) == pytest.approx(run.evaluate(rows(8, seed=3)))


def test_bundle_layout_and_manifest(trained):
    _, path = trained
    from pathlib import Path

    root = Path(path)
    manifest = json.loads((root / "manifest.json").read_text())
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert set(manifest["files"]) == files
    assert {"model.safetensors", "config.json", "tunekit.json", "history.json"} <= files
    assert any(f.startswith("tokenizer/") for f in files)
    meta = json.loads((root / "tunekit.json").read_text())
    assert meta["task"]["name"] == "classify" and meta["strategy"]["name"] == "full"
    assert meta["task"]["state"]["schema"]["labels"] == ["neg", "pos"]
    assert {"tunekit", "torch", "transformers"} <= set(meta["versions"])
    assert meta["training"]["epochs"] == 2


def test_altered_weights_refused(copy):
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0x01
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(
        BundleError, match="was altered: model.safetensors does not match its sha256"
    ):
        tunekit.load(copy)


def test_altered_metadata_refused(copy):
    meta = json.loads((copy / "tunekit.json").read_text())
    meta["task"]["state"]["schema"]["labels"] = ["pos", "neg"]
    (copy / "tunekit.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="tunekit.json does not match"):
        tunekit.load(copy)


def test_missing_file_refused(copy):
    victim = next(p for p in (copy / "tokenizer").iterdir() if p.is_file())
    victim.unlink()
    with pytest.raises(BundleError, match=f"partial: tokenizer/{victim.name} is missing"):
        tunekit.load(copy)


def test_missing_manifest_refused(copy):
    (copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        tunekit.load(copy)


def test_extra_file_refused(copy):
    (copy / "tokenizer" / "evil.py").write_text("print('hi')")
    with pytest.raises(BundleError, match="files not in its manifest: tokenizer/evil.py"):
        tunekit.load(copy)


@pytest.mark.parametrize("unsafe", ["../outside.txt", "/etc/passwd", "tokenizer/../../x"])
def test_unsafe_manifest_path_refused(copy, unsafe):
    (copy.parent / "outside.txt").write_text("x")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][unsafe] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unsafe path"):
        tunekit.load(copy)


def test_damaged_or_foreign_manifest_refused(copy):
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable"):
        tunekit.load(copy)
    (copy / "manifest.json").write_text(json.dumps({"format": "other", "files": {}}))
    with pytest.raises(BundleError, match="not a tunekit bundle"):
        tunekit.load(copy)
    (copy / "manifest.json").write_text(
        json.dumps({"format": "tunekit-bundle", "format_version": 99, "files": {}})
    )
    with pytest.raises(BundleError, match="newer than this tunekit"):
        tunekit.load(copy)


def test_missing_directory_refused(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        tunekit.load(tmp_path / "nothing")


def test_save_is_atomic(trained, tmp_path, monkeypatch):
    run, path = trained
    target = tmp_path / "out" / "model"

    def crash():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bundle_mod, "library_versions", crash)  # called mid-write
    with pytest.raises(RuntimeError, match="disk on fire"):
        run.save(target)
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no .partial directory left behind

    monkeypatch.undo()
    run.save(target)
    before = sorted(p.name for p in target.iterdir())
    monkeypatch.setattr(bundle_mod, "library_versions", crash)
    with pytest.raises(RuntimeError):
        run.save(target)  # overwriting fails: the previous bundle stays whole
    monkeypatch.undo()
    assert sorted(p.name for p in target.iterdir()) == before
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model"]
    assert tunekit.load(target).predict(TEXTS) == run.predict(TEXTS)


def test_save_over_a_file_and_unknown_option(trained, tmp_path):
    run, _ = trained
    (tmp_path / "file").write_text("x")
    with pytest.raises(TunekitError, match="is a file"):
        run.save(tmp_path / "file")
    with pytest.raises(TunekitError, match="unknown save option"):
        run.save(tmp_path / "b", compress=True)


def test_output_dir_writes_bundle(trained, tmp_path):
    run, _ = trained
    tiny = run.backbone["source"]
    out = tmp_path / "out"
    trained_again = tunekit.finetune(
        task="classify",
        data=rows(16),
        model=tiny,
        epochs=1,
        eval_split=0,
        max_length=16,
        progress=False,
        output_dir=out,
    )
    assert (out / "checkpoints").is_dir()
    assert tunekit.load(out / "bundle").predict(TEXTS) == trained_again.predict(TEXTS)
