"""Loading never runs someone else's code: bundles load weights from safetensors only, any
pickle path uses ``weights_only=True``, every transformers loading call passes
``trust_remote_code=False``, a bundle with Python files, pickles, ``auto_map`` or an unknown
``model_type`` is refused before transformers is asked anything, a manifest cannot point
outside its bundle, and its hashes cover every file.

The first tests audit the source (core and first-party plugins), resolving names through
imports so that aliases (``from torch import load``, ``import pickle as p``) cannot slip
past, and show on planted snippets that the audit catches each pattern; the others load
real bundles with the unpickling functions booby-trapped, or forged as in issue 15
(planted code + ``auto_map`` + own ``model_type``, manifest re-hashed), and check that
the load is refused and nothing of it runs."""

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
#
# Names are resolved through the module's imports, so ``from torch import load``,
# ``import pickle as p; p.load``, ``torch.serialization.load`` and
# ``from pickle import loads`` are seen as what they are.

#: deserialisers that can run code: never called in shipped code
UNPICKLERS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "_pickle.Unpickler",
    "cPickle.load",
    "cPickle.loads",
    "dill.load",
    "dill.loads",
    "cloudpickle.load",
    "cloudpickle.loads",
    "joblib.load",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "pandas.read_pickle",
    "builtins.eval",
    "builtins.exec",
}
#: torch.load and its wrappers: only with ``weights_only=True`` written out
TORCH_LOADERS = {"torch.load", "torch.serialization.load", "accelerate.utils.load"}
#: numpy loaders: unpickle only with ``allow_pickle=True``
NUMPY_LOADERS = {"numpy.load"}
#: transformers entry points that take ``trust_remote_code``
HF_FUNCTIONS = {"transformers.pipeline", "transformers.pipelines.pipeline"}
HF_METHODS = {"from_pretrained", "from_config"}


def _imports(tree: ast.AST) -> dict[str, str]:
    """Local name → the dotted name it stands for, from every import in *tree*."""
    names = {"eval": "builtins.eval", "exec": "builtins.exec"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def resolve(node: ast.AST, names: dict[str, str]) -> str:
    """The dotted name *node* refers to, with its first part replaced by what it imports."""
    raw = dotted(node)
    head, _, rest = raw.partition(".")
    full = names.get(head, head)
    return f"{full}.{rest}" if rest else full


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_constant(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def audit(source: str, filename: str = "<source>") -> list[str]:
    """Every unsafe loading call in *source*, as ``file:line what``."""
    tree = ast.parse(source, filename=filename)
    names = _imports(tree)
    bad = []
    restricted = set()  # Unpickler subclasses that override find_class (an allow-list)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {resolve(b, names) for b in node.bases}
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if bases & {"pickle.Unpickler", "_pickle.Unpickler"}:
                if "find_class" in methods:
                    restricted.add(node.name)
                else:
                    bad.append(f"{filename}:{node.lineno} unrestricted Unpickler subclass")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = resolve(node.func, names)
        where = f"{filename}:{node.lineno} {name}"
        hidden = [k for k in node.keywords if k.arg is None]  # **kwargs could carry anything
        if name in UNPICKLERS:
            bad.append(f"{where} (unpickles)")
        elif name in TORCH_LOADERS:
            if not is_constant(keyword(node, "weights_only"), True):
                bad.append(f"{where} without weights_only=True")
        elif name in NUMPY_LOADERS:
            if not is_constant(keyword(node, "allow_pickle"), False) and (
                keyword(node, "allow_pickle") is not None or hidden
            ):
                bad.append(f"{where} with allow_pickle not False")
        elif name in HF_FUNCTIONS or (
            isinstance(node.func, ast.Attribute) and node.func.attr in HF_METHODS
        ):
            if not is_constant(keyword(node, "trust_remote_code"), False):
                bad.append(f"{where} without trust_remote_code=False")
        elif name.split(".")[-1] in ("load", "loads") and (
            name.split(".")[0] in ("pickle", "_pickle", "dill", "cloudpickle", "torch")
        ):
            bad.append(f"{where} (a deserialiser reached through another name)")
    return bad


def audited_sources():
    for path in SOURCES:
        yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def test_the_audit_sees_the_sources():
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert "tunekit/bundle.py" in names and "tunekit/models.py" in names
    assert any(n.startswith("plugins/tagging/src/") for n in names)
    found = [
        c
        for file, text in audited_sources()
        for c in ast.walk(ast.parse(text))
        if isinstance(c, ast.Call)
        and isinstance(c.func, ast.Attribute)
        and c.func.attr == "from_pretrained"
    ]
    assert len(found) >= 4, "the audit should find the model and tokenizer loading calls"


@pytest.mark.parametrize(
    "snippet, finding",
    [
        ("import torch\ntorch.load(f)", "torch.load without weights_only=True"),
        ("import torch\ntorch.load(f, weights_only=False)", "torch.load without weights_only"),
        ("from torch import load\nload(f)", "torch.load without weights_only=True"),
        ("from torch import load as fetch\nfetch(f)", "torch.load without weights_only=True"),
        ("import torch\ntorch.serialization.load(f)", "torch.serialization.load without"),
        ("from torch import serialization\nserialization.load(f)", "torch.serialization.load"),
        ("import torch as t\nt.load(f)", "torch.load without weights_only=True"),
        ("from accelerate.utils import load\nload(f)", "accelerate.utils.load without"),
        ("import pickle\npickle.loads(b)", "pickle.loads (unpickles)"),
        ("from pickle import loads\nloads(b)", "pickle.loads (unpickles)"),
        ("import pickle as p\np.load(fh)", "pickle.load (unpickles)"),
        ("from pickle import Unpickler\nUnpickler(fh).load()", "pickle.Unpickler (unpickles)"),
        ("import pickle\nclass U(pickle.Unpickler):\n    pass", "unrestricted Unpickler subclass"),
        ("import joblib\njoblib.load(p)", "joblib.load (unpickles)"),
        ("import pandas as pd\npd.read_pickle(p)", "pandas.read_pickle (unpickles)"),
        ("import numpy as np\nnp.load(p, allow_pickle=True)", "numpy.load with allow_pickle"),
        ("eval(text)", "builtins.eval (unpickles)"),
        (
            "from transformers import AutoModel\nAutoModel.from_pretrained(p)",
            "transformers.AutoModel.from_pretrained without trust_remote_code=False",
        ),
        (
            "import transformers as tf\ntf.AutoConfig.from_pretrained(p, trust_remote_code=True)",
            "transformers.AutoConfig.from_pretrained without trust_remote_code=False",
        ),
        (
            "from transformers import AutoTokenizer as T\nT.from_pretrained(p, **opts)",
            "transformers.AutoTokenizer.from_pretrained without trust_remote_code=False",
        ),
        ("def f(cls, c):\n    return cls.from_config(c)", "cls.from_config without trust"),
        ("from transformers import pipeline\npipeline('fill-mask', model=p)", "pipeline without"),
    ],
)
def test_the_audit_catches_a_planted_snippet(snippet, finding):
    found = audit(snippet, "planted.py")
    assert any(finding in f for f in found), found


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\ntorch.load(f, weights_only=True)",
        "from torch import load\nload(f, map_location='cpu', weights_only=True)",
        "import numpy as np\nnp.load(p)",
        "from transformers import AutoModel\nAutoModel.from_pretrained(p, trust_remote_code=False)",
        "import json\njson.load(fh)",
        "from safetensors.torch import load_file\nload_file(p)",
        "import pickle\nclass R(pickle.Unpickler):\n    def find_class(self, m, n):\n        raise KeyError(n)",
    ],
)
def test_the_audit_passes_safe_code(snippet):
    assert audit(snippet, "safe.py") == []


def test_shipped_sources_pass_the_audit():
    bad = [finding for file, text in audited_sources() for finding in audit(text, file)]
    assert not bad, "unsafe loading in shipped code:\n" + "\n".join(bad)


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


def test_planted_pickle_and_model_code_are_refused(bundles, tmp_path):
    path, _ = bundles["full"]
    bundle = Path(shutil.copytree(path, tmp_path / "bundle"))
    marker = tmp_path / "PWNED"
    buffer = io.BytesIO()
    torch.save({"weight": Planted(marker)}, buffer)
    (bundle / "pytorch_model.bin").write_bytes(buffer.getvalue())
    reseal(bundle)
    with pytest.raises(BundleError, match=r"pytorch_model.bin is .*unpickling can run code"):
        tunekit.load(bundle)
    assert not marker.exists()


def _forge(bundle: Path, marker: Path) -> None:
    """The attack of issue 15: custom model code + auto_map + a model_type of its own."""
    (bundle / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('code ran')\n"
        "from transformers import BertConfig, BertModel\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evil'\n"
        "class EvilModel(BertModel):\n    config_class = EvilConfig\n"
    )
    config = json.loads((bundle / "config.json").read_text())
    config["model_type"] = "evil"
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (bundle / "config.json").write_text(json.dumps(config))
    reseal(bundle)


def test_the_issue_attack_is_refused_before_transformers_runs(bundles, tmp_path, monkeypatch):
    import transformers

    path, _ = bundles["full"]
    bundle = Path(shutil.copytree(path, tmp_path / "bundle"))
    marker = tmp_path / "PWNED"
    _forge(bundle, marker)

    def asked(*args, **kwargs):
        raise AssertionError("transformers was asked to load from the forged bundle")

    for auto in ("AutoConfig", "AutoTokenizer", "AutoModel"):
        for method in ("from_pretrained", "from_config"):
            if hasattr(getattr(transformers, auto), method):
                monkeypatch.setattr(getattr(transformers, auto), method, asked)
    with pytest.raises(BundleError, match=r"contains code \(evil.py\)"):
        tunekit.load(bundle)
    (bundle / "evil.py").unlink()  # without the file, the keys alone are refused
    reseal(bundle)
    with pytest.raises(BundleError, match=r"config.json has key 'auto_map'.*never runs"):
        tunekit.load(bundle)
    assert not marker.exists()


def test_the_issue_attack_through_the_cli_with_stdin_closed(bundles, tmp_path):
    """``tunekit predict FORGED x`` with no terminal: a clear error, no prompt, no code run."""
    import os
    import subprocess
    import sys

    path, _ = bundles["full"]
    bundle = Path(shutil.copytree(path, tmp_path / "bundle"))
    marker = tmp_path / "PWNED"
    _forge(bundle, marker)
    done = subprocess.run(
        [sys.executable, "-m", "tunekit", "predict", str(bundle), "good film"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert done.returncode != 0
    assert "tunekit: error: bundle" in done.stderr and "evil.py" in done.stderr
    assert "Traceback" not in done.stderr and "trust_remote_code" not in done.stderr
    assert "[y/N]" not in done.stdout + done.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "where, edit, fragment",
    [
        (
            "tokenizer/tokenizer_config.json",
            lambda d: d.update(auto_map={"AutoTokenizer": ["evil.Tok", None]}),
            r"tokenizer/tokenizer_config.json has key 'auto_map'",
        ),
        (
            "config.json",
            lambda d: d.update(auto_map={"AutoModel": "evil.EvilModel"}),
            r"config.json has key 'auto_map'",
        ),
        (
            "tunekit.json",
            lambda d: d["task"]["config"].update(extra={"auto_map": {"AutoModel": "x.Y"}}),
            r"tunekit.json has key 'task.config.extra.auto_map'",
        ),
        (
            "config.json",
            lambda d: d.update(model_type="evil"),
            r"config.json key 'model_type' is 'evil', which transformers does not know",
        ),
    ],
)
def test_code_asking_keys_are_refused(bundles, tmp_path, where, edit, fragment):
    path, _ = bundles["lora"]
    bundle = Path(shutil.copytree(path, tmp_path / "bundle"))
    data = json.loads((bundle / where).read_text())
    edit(data)
    (bundle / where).write_text(json.dumps(data))
    reseal(bundle)
    with pytest.raises(BundleError, match=fragment):
        tunekit.load(bundle)


@pytest.mark.parametrize("name", ["tokenizer/helper.py", "deep/mod.cpython-311.pyc", "ext.so"])
def test_code_files_are_refused_anywhere(bundles, tmp_path, name):
    path, _ = bundles["lora"]
    bundle = Path(shutil.copytree(path, tmp_path / "bundle"))
    (bundle / name).parent.mkdir(parents=True, exist_ok=True)
    (bundle / name).write_text("print('ran')")
    reseal(bundle)
    with pytest.raises(BundleError, match=f"contains code \\({name}\\)"):
        tunekit.load(bundle)


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


@pytest.mark.parametrize(
    "file, change, fragment",
    [
        ("config.json", {"auto_map": {"AutoModel": "evil.EvilModel"}}, "key 'auto_map'"),
        ("config.json", {"model_type": "evil"}, "model_type 'evil'"),
        ("tokenizer_config.json", {"auto_map": {"AutoTokenizer": ["evil.T", None]}}, "auto_map"),
    ],
)
def test_a_model_directory_asking_for_its_own_code_is_refused(tmp_path, file, change, fragment):
    """``model=DIR`` (not a bundle): refused before transformers reads it, naming the file."""
    from tunekit.assembly import load_backbone
    from tunekit.errors import ConfigError

    model = Path(make_tiny_model(tmp_path / "model", ["good bad film"]))
    marker = tmp_path / "PWNED"
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n")
    data = json.loads((model / file).read_text())
    data.update(change)
    (model / file).write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=f"{file} has .*{fragment}.*never runs such code"):
        load_backbone(str(model))
    assert not marker.exists()
