"""Saving never deletes what it did not write (issue 15 §2).

``run.save``, ``export_encoder``, ``export`` and ``finetune(output_dir=...)`` / CLI
``--output`` write into a directory only when it is absent, empty, or what an earlier
tunekit save there recorded writing; anything else is a ``BundleError`` raised before any
training, with the user's files intact. A save over an earlier bundle gives byte for byte
the bundle a fresh save gives; leftovers of killed saves are cleaned by the next save; the
two-rename fallback (where the system cannot swap directories) never leaves the target
missing, and a kill between its renames is repaired by the next save."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import tunekit
from tunekit import atomic
from tunekit.cli import main as cli
from tunekit.errors import BundleError, ConfigError, TunekitError
from tunekit.testing import make_tiny_model

ROWS = [{"text": "good film", "label": "pos"}, {"text": "bad film", "label": "neg"}] * 4
OTHER = [{"text": "a dull film", "label": "no"}, {"text": "a fine film", "label": "yes"}] * 4
TEXTS = ["good film", "a dull film"]
OPTIONS = dict(epochs=1, eval_split=0, max_length=8, progress=False)
#: the head layout transformers has, so that run.export() is exact
EXPORTABLE = dict(head="mlp", hidden=[32], activation="tanh", pooling="cls")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "m", ["good bad dull fine film a"])


@pytest.fixture(scope="module")
def runs(tiny):
    a = tunekit.finetune("classify", data=ROWS, model=tiny, seed=1, **OPTIONS, **EXPORTABLE)
    b = tunekit.finetune(
        "classify", data=OTHER, model=tiny, strategy="lora", seed=2, **OPTIONS, **EXPORTABLE
    )
    return a, b


def tree(path: Path) -> dict[str, str]:
    """Every file under *path* (links and hidden ones included) → sha256 of its bytes."""
    return {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.md").write_text("my notes")
    (path / "data").mkdir()
    (path / "data" / "train.csv").write_text("text,label\n")
    return path


SAVES = {
    "run.save": lambda run, path: run.save(path),
    "run.save merged": lambda run, path: run.save(path, merged=True),
    "export_encoder": lambda run, path: run.export_encoder(path),
    "export": lambda run, path: run.export(path),
}


@pytest.mark.parametrize("how", list(SAVES))
def test_a_folder_of_user_files_is_refused_and_kept(runs, tmp_path, how):
    target = user_folder(tmp_path / "proj")
    before = tree(tmp_path)
    with pytest.raises(BundleError, match=r"proj is not a tunekit bundle or export \(data/train"):
        SAVES[how](runs[0], target)
    assert tree(tmp_path) == before  # notes.md and everything else intact, nothing added
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no .partial left


@pytest.mark.parametrize("how", list(SAVES))
def test_absent_empty_and_own_targets_are_written(runs, tmp_path, how):
    save = SAVES[how]
    save(runs[0], tmp_path / "new" / "deep")  # absent, parents created
    (tmp_path / "empty").mkdir()
    save(runs[0], tmp_path / "empty")
    first = tree(tmp_path / "empty")
    save(runs[1], tmp_path / "empty")  # what tunekit wrote there is replaced as a whole
    assert tree(tmp_path / "empty") != first
    assert tree(tmp_path / "empty") == tree(Path(save(runs[1], tmp_path / "fresh")))


def test_a_bundle_with_a_user_file_added_is_refused(runs, tmp_path):
    path = Path(runs[0].save(tmp_path / "model"))
    (path / "notes.md").write_text("results of Tuesday")
    (path / "tokenizer" / "extra.txt").write_text("mine")
    before = tree(path)
    with pytest.raises(
        BundleError, match=r"holds files the tunekit save there did not write \(notes.md, "
    ):
        runs[1].save(path)
    assert tree(path) == before


def test_a_save_over_another_run_equals_its_fresh_save(runs, tmp_path):
    """The overwrite test: run B saved over run A's bundle is byte for byte B's own bundle."""
    a, b = runs
    target = Path(a.save(tmp_path / "model"))
    a_bytes = tree(target)
    b.save(target)
    fresh = Path(b.save(tmp_path / "fresh"))
    assert tree(target) == tree(fresh)
    assert tree(target) != a_bytes and tree(target)["model.safetensors"] != a_bytes.get(
        "model.safetensors"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "model"]
    assert tunekit.load(target).predict(TEXTS) == b.predict(TEXTS)


def test_the_current_directory_and_above_are_refused(runs, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for target in (".", str(work), "..", os.sep):
        with pytest.raises(BundleError, match="current directory"):
            runs[0].save(target)
        with pytest.raises(BundleError, match="current directory"):
            runs[0].export_encoder(target)
    assert list(work.iterdir()) == []


def test_a_mount_point_is_refused(monkeypatch, tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    (mount / "x").write_text("x")
    real = os.path.ismount
    monkeypatch.setattr(atomic.os.path, "ismount", lambda p: str(p) == str(mount) or real(p))
    with pytest.raises(BundleError, match="mnt is a mount point"):
        atomic.check_save_target(mount, option="--output")


def test_a_file_is_refused(runs, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="file .* not a directory"):
        atomic.check_save_target(tmp_path / "file", option="--output")


# ---- checked before training ------------------------------------------------------------


def test_finetune_output_dir_is_checked_before_training(tiny, tmp_path, monkeypatch):
    out = tmp_path / "out"
    user_folder(out / "bundle")
    before = tree(tmp_path)

    def training_started(*args, **kwargs):
        raise AssertionError("training started before the output directory was checked")

    monkeypatch.setattr(tunekit.api, "load_backbone", training_started)
    with pytest.raises(BundleError, match=r"output_dir .*bundle is not a tunekit bundle"):
        tunekit.finetune("classify", data=ROWS, model=tiny, output_dir=out, **OPTIONS)
    assert tree(tmp_path) == before


def test_cli_output_is_checked_before_training(tiny, tmp_path, monkeypatch, capsys):
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "good film,pos\nbad film,neg\n" * 4)
    monkeypatch.chdir(tmp_path)
    user_folder(tmp_path / "bundle")  # what `--output .` would replace
    before = tree(tmp_path)
    args = ["finetune", "--task", "classify", "--data", str(data), "--model", tiny]
    args += ["--epochs", "1", "--eval-split", "0", "--max-length", "8", "--no-progress"]
    assert cli([*args, "--output", "."]) != 0
    err = capsys.readouterr()
    assert "tunekit: error: --output" in err.err and "notes.md" in err.err
    assert "train_loss" not in err.out  # no history table: training never started
    assert tree(tmp_path) == before


def test_cli_export_into_the_current_directory_fails_fast(runs, tmp_path, monkeypatch, capsys):
    bundle = runs[0].save(tmp_path / "model")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert cli(["export", bundle, "."]) != 0
    assert "current directory" in capsys.readouterr().err
    assert list(work.iterdir()) == []


# ---- killed saves -----------------------------------------------------------------------


def test_leftovers_of_killed_saves_are_cleaned_by_the_next_save(runs, tmp_path):
    target = tmp_path / "model"
    dead = 2**31 - 5  # no such process
    (tmp_path / f".model.{dead}-deadbeef.partial").mkdir()
    (tmp_path / f".model.{dead}-deadbeef.partial" / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".model.cafebabe.partial").mkdir()  # written before pids were in the name
    (tmp_path / f".model.{dead}-0badf00d.old").mkdir()
    running = tmp_path / f".model.{os.getppid()}-12345678.partial"  # a live save: kept
    running.mkdir()
    (tmp_path / ".modelx.12345678.partial").mkdir()  # another target's: kept
    (tmp_path / "notes.md").write_text("mine")
    runs[0].save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model", running.name, ".modelx.12345678.partial", "notes.md"]
    )
    assert tunekit.load(target).predict(TEXTS) == runs[0].predict(TEXTS)


def _without_exchange(
    monkeypatch, target: Path, *, fail_on: int | None = None, error=KeyboardInterrupt
):
    """Force the two-rename fallback; optionally interrupt its *fail_on*-th rename of
    *target* (renames of other paths, by the libraries, pass through)."""
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    calls = []
    real = os.replace

    def replace(src, dst):
        if target not in (Path(src), Path(dst)):
            return real(src, dst)
        calls.append((Path(src), Path(dst)))
        if fail_on is not None and len(calls) == fail_on:
            raise error("killed between the renames")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    return calls


@pytest.mark.parametrize(
    "error, raised", [(KeyboardInterrupt, KeyboardInterrupt), (OSError, TunekitError)]
)
def test_the_fallback_path_never_leaves_the_target_missing(
    runs, tmp_path, monkeypatch, error, raised
):
    a, b = runs
    target = Path(a.save(tmp_path / "model"))
    before = tree(target)
    calls = _without_exchange(monkeypatch, target, fail_on=2, error=error)
    with pytest.raises(raised, match="killed between"):
        b.save(target)
    monkeypatch.undo()
    assert Path(calls[0][1]).name.endswith(".old") and calls[1][1] == target
    assert tree(target) == before  # the previous bundle is back, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert tunekit.load(target).predict(TEXTS) == a.predict(TEXTS)


def test_the_fallback_path_replaces_when_nothing_fails(runs, tmp_path, monkeypatch):
    a, b = runs
    target = Path(a.save(tmp_path / "model"))
    calls = _without_exchange(monkeypatch, target)
    b.save(target)
    monkeypatch.undo()
    assert len(calls) == 2
    assert tree(target) == tree(Path(b.save(tmp_path / "fresh")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "model"]


def test_a_kill_between_the_renames_is_repaired_by_the_next_save(runs, tmp_path):
    """A hard kill runs no handler: the target is gone and the previous bundle sits in a
    ``.old`` sibling. Loading says where it is; the next save puts it back, then replaces
    it, and leaves nothing behind."""
    a, b = runs
    target = Path(a.save(tmp_path / "model"))
    before = tree(target)
    old = tmp_path / f".model.{2**31 - 5}-0badf00d.old"
    os.replace(target, old)  # the state a kill after the first rename leaves
    with pytest.raises(BundleError, match=r"interrupted and the previous bundle is at .*\.old"):
        tunekit.load(target)
    atomic.recover(target)
    assert tree(target) == before and not old.exists()
    os.replace(target, old)
    b.save(target)
    assert tree(target) == tree(Path(b.save(tmp_path / "fresh")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "model"]


# ---- signed bundles ---------------------------------------------------------------------


def test_signed_bundles_load_only_with_their_key(runs, tmp_path):
    a, _ = runs
    signed = Path(a.save(tmp_path / "signed", sign_key=b"team secret"))
    signature = json.loads((signed / "signature.json").read_text())
    assert signature["algorithm"] == "hmac-sha256" and len(signature["manifest"]) == 64
    assert tunekit.load(signed, verify_key="team secret").predict(TEXTS) == a.predict(TEXTS)
    assert tunekit.load(signed).predict(TEXTS) == a.predict(TEXTS)  # integrity alone
    with pytest.raises(BundleError, match="does not match verify_key"):
        tunekit.load(signed, verify_key=b"another key")
    unsigned = a.save(tmp_path / "unsigned")
    with pytest.raises(BundleError, match=r"is not signed \(signature.json is missing\)"):
        tunekit.load(unsigned, verify_key=b"team secret")
    # a forger edits a file and re-hashes the manifest: the signature no longer matches
    meta = json.loads((signed / "tunekit.json").read_text())
    meta["metrics"] = {"accuracy": 1.0}
    (signed / "tunekit.json").write_text(json.dumps(meta))
    manifest = json.loads((signed / "manifest.json").read_text())
    manifest["files"]["tunekit.json"] = hashlib.sha256(
        (signed / "tunekit.json").read_bytes()
    ).hexdigest()
    (signed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not match verify_key"):
        tunekit.load(signed, verify_key=b"team secret")
    with pytest.raises(ConfigError, match="sign_key must be non-empty"):
        a.save(tmp_path / "x", sign_key=b"")


def test_cli_verify_key_file(runs, tmp_path, capsys):
    key = tmp_path / "team.key"
    key.write_bytes(b"team secret\n")
    signed = runs[0].save(tmp_path / "signed", sign_key=b"team secret")
    assert cli(["predict", signed, "good film", "--verify-key-file", str(key)]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed["label"] == runs[0].predict("good film")["label"]
    key.write_bytes(b"wrong")
    assert cli(["predict", signed, "good film", "--verify-key-file", str(key)]) != 0
    assert "does not match verify_key" in capsys.readouterr().err


def test_cli_signs_what_it_trains(tiny, tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "good film,pos\nbad film,neg\n" * 4)
    key = tmp_path / "team.key"
    key.write_bytes(b"0123456789abcdef\n")
    args = ["finetune", "--task", "classify", "--data", str(data), "--model", tiny]
    args += ["--epochs", "1", "--eval-split", "0", "--max-length", "8", "--no-progress"]
    out = tmp_path / "out"
    assert cli([*args, "--output", str(out), "--sign-key-file", str(key)]) == 0
    capsys.readouterr()
    run = tunekit.load(out, verify_key=b"0123456789abcdef")
    assert cli(["predict", str(out), "good film", "--verify-key-file", str(key)]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed["label"] == run.predict("good film")["label"]
    with pytest.raises(BundleError, match="does not match verify_key"):
        tunekit.load(out, verify_key=b"another")
    assert cli([*args, "--sign-key-file", str(key)]) != 0  # nothing to sign without --output
    assert "--sign-key-file signs the bundle --output writes" in capsys.readouterr().err
