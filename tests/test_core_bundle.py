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
    assert (out / "bundle" / "manifest.json").is_file()  # checkpoints are deleted once it is
    assert tunekit.load(out / "bundle").predict(TEXTS) == trained_again.predict(TEXTS)


# ---- bundles edited and re-hashed (issue 15 §4) -------------------------------------------
#
# The manifest is a checksum list anyone can recompute, so each edit below is followed by a
# re-hash: the hash check passes and the bundle's own validation must catch the damage as a
# BundleError naming the file and key (never a raw SafetensorError, size-mismatch
# RuntimeError, KeyError, RecursionError or JSONDecodeError).


@pytest.fixture(scope="module")
def lora_trained(trained, tmp_path_factory):
    run, _ = trained
    lora = tunekit.finetune(
        task="classify",
        data=rows(16),
        model=run.backbone["source"],
        strategy="lora",
        epochs=1,
        eval_split=0,
        max_length=16,
        progress=False,
    )
    return lora, lora.save(tmp_path_factory.mktemp("lora") / "saved")


def reseal(bundle) -> None:
    """Recompute every sha256 of the manifest (what anyone editing a bundle can do)."""
    import hashlib

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = {
        p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def edit_json(name, change):
    def edit(bundle):
        data = json.loads((bundle / name).read_text())
        change(data, bundle)
        (bundle / name).write_text(json.dumps(data))

    return edit


def write(name, data: bytes):
    return lambda bundle: (bundle / name).write_bytes(data)


def truncate(bundle):
    weights = bundle / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])


def torch_pickle(bundle):
    torch.save({"weight": torch.zeros(2)}, bundle / "model.safetensors")


def plain_pickle(bundle):
    import pickle

    (bundle / "model.safetensors").write_bytes(pickle.dumps({"weight": [0.0]}, protocol=4))


def labels(new):
    return edit_json("tunekit.json", lambda d, b: d["task"]["state"]["schema"].update(labels=new))


def self_base(data, bundle):
    data["backbone"].update(name=str(bundle), source=str(bundle))


#: case → (strategy, edit, re-hash?, message fragments)
EDITS = {
    "truncated weights": ("full", truncate, True, ["model.safetensors is not a readable"]),
    "weights pickled by torch.save": (
        "full",
        torch_pickle,
        True,
        ["model.safetensors is a zip archive", "unpickling can run code"],
    ),
    "weights as a plain pickle": ("full", plain_pickle, True, ["model.safetensors is a pickle"]),
    "hidden_size changed": (
        "full",
        edit_json("config.json", lambda d, b: d.update(hidden_size=64)),
        True,
        ["model.safetensors holds encoder.", "with shape", "hidden_size"],
    ),
    "model_type missing": (
        "full",
        edit_json("config.json", lambda d, b: d.pop("model_type")),
        True,
        ["config.json has no key 'model_type'"],
    ),
    "labels of another count": (
        "full",
        labels(["neg", "pos", "meh"]),
        True,
        ["model.safetensors holds head.", "label list"],
    ),
    "labels duplicated": (
        "full",
        labels(["pos", "pos"]),
        True,
        ["tunekit.json key 'task'", "duplicate labels"],
    ),
    "tunekit.json without task": (
        "full",
        edit_json("tunekit.json", lambda d, b: d.pop("task")),
        True,
        ["tunekit.json key 'task' is missing"],
    ),
    "tunekit.json task without name": (
        "full",
        edit_json("tunekit.json", lambda d, b: d["task"].pop("name")),
        True,
        ["tunekit.json key 'task.name' is missing"],
    ),
    "tunekit.json bad JSON": (
        "full",
        write("tunekit.json", b'{"task": '),
        True,
        ["tunekit.json is unreadable, not valid JSON"],
    ),
    "config.json bad JSON": (
        "full",
        write("config.json", b"{nope"),
        True,
        ["config.json is unreadable"],
    ),
    "history.json bad JSON": (
        "full",
        write("history.json", b"[1, 2"),
        True,
        ["history.json is unreadable"],
    ),
    "tokenizer config bad JSON": (
        "full",
        write("tokenizer/tokenizer_config.json", b"{"),
        True,
        ["tokenizer/tokenizer_config.json is unreadable"],
    ),
    "deeply nested JSON": (
        "full",
        write("history.json", b"[" * 100_000 + b"]" * 100_000),
        True,
        ["history.json is unreadable"],
    ),
    "format_version abc in manifest": (
        "full",
        edit_json("manifest.json", lambda d, b: d.update(format_version="abc")),
        False,
        ["manifest.json key 'format_version' is 'abc', not a whole number"],
    ),
    "format_version abc in tunekit.json": (
        "full",
        edit_json("tunekit.json", lambda d, b: d.update(format_version="abc")),
        True,
        ["tunekit.json key 'format_version' is 'abc'"],
    ),
    "files as a list": (
        "full",
        edit_json("manifest.json", lambda d, b: d.update(files=sorted(d["files"]))),
        False,
        ["manifest.json key 'files' must map each file name to its sha256 (got list)"],
    ),
    "manifest a list": (
        "full",
        write("manifest.json", b"[]"),
        False,
        ["not a tunekit bundle (format 'list'"],
    ),
    "stores_encoder missing": (
        "full",
        edit_json("tunekit.json", lambda d, b: d["strategy"].pop("stores_encoder")),
        True,
        ["tunekit.json key 'strategy.stores_encoder' is missing"],
    ),
    "training option of the wrong type": (
        "full",
        edit_json("tunekit.json", lambda d, b: d["training"].update(epochs="many")),
        True,
        ["tunekit.json key 'training'", "epochs"],
    ),
    "LoRA bundle naming itself as its base": (
        "lora",
        edit_json("tunekit.json", self_base),
        True,
        ["names itself", "tunekit.json key 'backbone'"],
    ),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_edited_and_rehashed_bundles_are_bundle_errors(trained, lora_trained, tmp_path, case):
    import hashlib
    import shutil
    from pathlib import Path

    strategy, edit, rehash, fragments = EDITS[case]
    source = Path((trained if strategy == "full" else lora_trained)[1])
    bundle = Path(shutil.copytree(source, tmp_path / "bundle"))
    edit(bundle)
    if rehash:
        reseal(bundle)

    def outside():
        roots = [tmp_path, source.parent, Path(trained[0].backbone["source"]), Path.cwd()]
        return {
            p: hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots
            for p in sorted(root.rglob("*") if root != Path.cwd() else root.glob("*"))
            if p.is_file() and bundle not in p.parents
        }

    before = outside()
    with pytest.raises(BundleError) as caught:
        tunekit.load(bundle, device="cpu").predict(TEXTS)
    message = str(caught.value)
    assert str(bundle) in message
    for fragment in fragments:
        assert fragment in message, message
    assert outside() == before


def test_one_bundle_loads_in_several_threads_at_once(trained):
    """The cycle guard (a LoRA bundle naming itself as base) is per thread: concurrent
    loads of one bundle are not mistaken for a cycle."""
    from concurrent.futures import ThreadPoolExecutor

    run, path = trained
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: tunekit.load(path, device="cpu"), range(4)))
    assert all(r.predict(TEXTS) == run.predict(TEXTS) for r in loaded)
