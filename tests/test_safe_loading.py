"""Loading never runs someone else's code: bundles load weights from safetensors only, any
pickle path uses ``weights_only=True``, ``trust_remote_code`` is never switched on, a
manifest cannot point outside its bundle, and its hashes cover every file.

The first tests audit the source (core and first-party plugins) so that a future
``torch.load(path)`` or ``trust_remote_code=True`` fails here; the others load real
bundles with the unpickling functions booby-trapped, or with a planted pickle and planted
model code, and check that nothing of it runs."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import tunekit
from tunekit.errors import BundleError
from tunekit.testing import make_tiny_model

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    [*(ROOT / "tunekit").rglob("*.py"), *(ROOT / "plugins").glob("*/src/**/*.py")],
    key=str,
)

# ---- source audit ------------------------------------------------------------------------


def calls():
    """(file, call node) for every call in the shipped sources."""
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                yield path.relative_to(ROOT).as_posix(), node


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_constant(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def test_the_audit_sees_the_sources():
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert "tunekit/trainer.py" in names and "tunekit/bundle.py" in names
    assert any(n.startswith("plugins/tagging/src/") for n in names)
    loads = [c for _, c in calls() if dotted(c.func) == "torch.load"]
    assert loads, "the audit should find the checkpoint's torch.load calls"


def test_every_torch_load_is_weights_only():
    bad = [
        f"{file}:{call.lineno}"
        for file, call in calls()
        if dotted(call.func).endswith("torch.load")
        and not is_constant(keyword(call, "weights_only"), True)
    ]
    assert not bad, f"torch.load without weights_only=True: {bad}"


def test_trust_remote_code_is_never_switched_on():
    bad = [
        f"{file}:{call.lineno}"
        for file, call in calls()
        if any(k.arg == "trust_remote_code" for k in call.keywords)
        and not is_constant(keyword(call, "trust_remote_code"), False)
    ]
    bad += [
        f"{file}:{call.lineno} (**kwargs may carry it)"
        for file, call in calls()
        if dotted(call.func).endswith(".from_pretrained")
        and any(k.arg is None and "remote" in ast.unparse(k.value).lower() for k in call.keywords)
    ]
    assert not bad, f"trust_remote_code not literally False: {bad}"


def test_no_unrestricted_pickle():
    unsafe = {"pickle.load", "pickle.loads", "np.load", "numpy.load", "joblib.load", "eval", "exec"}
    bad = []
    for file, call in calls():
        name = dotted(call.func)
        if name in ("np.load", "numpy.load") and not is_constant(
            keyword(call, "allow_pickle"), True
        ):
            continue  # numpy refuses pickles by default
        if name in unsafe:
            bad.append(f"{file}:{call.lineno} {name}")
    # the one pickle reader: a corpus file read through an allow-list Unpickler
    unpicklers = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                dotted(b) == "pickle.Unpickler" for b in node.bases
            ):
                methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
                unpicklers.append((path.relative_to(ROOT).as_posix(), "find_class" in methods))
    assert not bad, f"unrestricted deserialisation: {bad}"
    assert all(restricted for _, restricted in unpicklers), unpicklers


# ---- loading real bundles ----------------------------------------------------------------

ROWS = [{"text": "good film", "label": "pos"}, {"text": "bad film", "label": "neg"}] * 4
TEXTS = ["good film", "bad film", "a film"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("safe")
    tiny = make_tiny_model(root / "tiny", ["good bad film a"])
    out = {}
    for strategy in ("full", "lora"):
        run = tunekit.finetune(
            "classify",
            data=ROWS,
            model=tiny,
            strategy=strategy,
            epochs=1,
            eval_split=0,
            max_length=8,
            progress=False,
        )
        out[strategy] = (run.save(root / strategy), run.predict(TEXTS))
    return out


def reseal(bundle: Path) -> None:
    """Recompute every hash after planting files (what a forger would do)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = {
        p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_loading_never_unpickles(bundles, strategy, monkeypatch):
    path, expected = bundles[strategy]

    def trap(*args, **kwargs):
        raise AssertionError("a bundle load reached an unpickler")

    monkeypatch.setattr(torch, "load", trap)
    monkeypatch.setattr(pickle, "load", trap)
    monkeypatch.setattr(pickle, "loads", trap)
    monkeypatch.setattr(pickle, "Unpickler", trap)
    assert tunekit.load(path).predict(TEXTS) == expected


class Planted:
    """Unpickling this writes a marker file: proof that code from the bundle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pickle ran"))


def test_planted_pickle_and_model_code_never_run(bundles, tmp_path):
    path, expected = bundles["full"]
    bundle = Path(shutil.copytree(path, tmp_path / "bundle"))
    marker = tmp_path / "PWNED"
    buffer = io.BytesIO()
    torch.save({"weight": Planted(marker)}, buffer)
    for name in ("pytorch_model.bin", "tokenizer/training_args.bin"):
        (bundle / name).write_bytes(buffer.getvalue())
    (bundle / "modeling_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('code ran')\nfrom transformers import BertModel as EvilModel\n"
    )
    config = json.loads((bundle / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (bundle / "config.json").write_text(json.dumps(config))
    reseal(bundle)

    assert tunekit.load(bundle).predict(TEXTS) == expected
    assert not marker.exists()


def test_symbolic_links_are_refused(bundles, tmp_path):
    path, _ = bundles["full"]
    bundle = Path(shutil.copytree(path, tmp_path / "bundle"))
    outside = tmp_path / "elsewhere.json"
    outside.write_text((bundle / "history.json").read_text())
    (bundle / "history.json").unlink()
    (bundle / "history.json").symlink_to(outside)  # same bytes: the hash still matches
    with pytest.raises(BundleError, match=r"symbolic links \(history.json\).*plain files only"):
        tunekit.load(bundle)


@pytest.mark.parametrize("extra", [".hidden", "tokenizer/evil.py", "deep/er/weights.bin"])
def test_every_file_is_covered_by_the_manifest(bundles, tmp_path, extra):
    path, _ = bundles["lora"]
    bundle = Path(shutil.copytree(path, tmp_path / "bundle"))
    (bundle / extra).parent.mkdir(parents=True, exist_ok=True)
    (bundle / extra).write_text("x")
    with pytest.raises(BundleError, match=f"not in its manifest: {extra}"):
        tunekit.load(bundle)


@pytest.mark.parametrize(
    "name", ["../outside.json", "/etc/hostname", "tokenizer/../../outside.json", ""]
)
def test_manifest_names_stay_inside_the_bundle(bundles, tmp_path, name):
    path, _ = bundles["lora"]
    bundle = Path(shutil.copytree(path, tmp_path / "bundle"))
    (tmp_path / "outside.json").write_text("{}")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(b"{}").hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unsafe path"):
        tunekit.load(bundle)
