"""The bad-input matrix: every way a user commonly gets the input wrong — data files,
records, columns, labels, names, options, output directories, bundles, the CLI — across
core and the plugins. Each raises a :class:`~tunekit.errors.TunekitError` subclass whose
message names the offending thing and the fix, and none leaves output behind: the
``output_dir`` is never created and no file anywhere in the test's directories (or the
shared bundle) is added, changed or removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

import tunekit
from tunekit import cli
from tunekit.errors import BundleError, ConfigError, DataError, TunekitError, UnknownNameError
from tunekit.testing import make_tiny_model

WORDS = "good great bad awful film the plot john paris lives in how old are you cat sat mat"
ROWS = [
    {"text": f"good film {i}" if i % 2 else f"bad film {i}", "label": "pos" if i % 2 else "neg"}
    for i in range(12)
]
FAST = dict(epochs=1, batch_size=4, max_length=16, progress=False)


class Env:
    """What a case needs: its own directory, the tiny model, a trained bundle, and
    ``finetune(...)`` writing to ``self.out``."""

    def __init__(self, tmp: Path, tiny: str, bundle: Path) -> None:
        self.tmp, self.tiny, self.shared_bundle = tmp, tiny, bundle
        self.out = tmp / "out"

    def finetune(self, task: str = "classify", **options) -> Callable[[], object]:
        options = {"model": self.tiny, "output_dir": str(self.out), **FAST, **options}
        return lambda: tunekit.finetune(task, **options)

    def file(self, name: str, content: str | bytes) -> str:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    def bundle_copy(self) -> Path:
        copy = self.tmp / "bundle"
        shutil.copytree(self.shared_bundle, copy)
        return copy

    def cli(self, *argv: str) -> Callable[[], object]:
        return lambda: cli.main(["--debug", *argv])


def reseal(bundle: Path) -> None:
    """Rewrite the manifest's hashes after an edit (what a forger would do)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def read_only_dir(tmp: Path) -> Path:
    """A directory this process cannot write in: permission bits, or where those do not
    stop us (root), a kernel file system that refuses everyone."""
    ro = tmp / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        (ro / "probe").mkdir()
    except PermissionError:
        return ro
    (ro / "probe").rmdir()
    ro.chmod(0o755)
    for candidate in (Path("/sys/tunekit-bad-input"), Path("/proc/tunekit-bad-input")):
        try:
            candidate.mkdir()
        except OSError:
            return candidate
        candidate.rmdir()
    pytest.skip("no read-only directory available to this user")


# ---- the cases ---------------------------------------------------------------------------

CASES: list = []


def case(case_id: str, error: type[TunekitError]):
    """Register ``make(env) -> (call, fragments)``: *call* must raise *error* with every
    fragment in its message."""

    def register(make):
        CASES.append(pytest.param(make, error, id=case_id))
        return make

    return register


# data files and records (core: classify) -------------------------------------------------


@case("missing-file", DataError)
def _(env):
    path = str(env.tmp / "nope.csv")
    return env.finetune(data=path), [f"data file not found: {path}", "Check the path"]


@case("wrong-extension", DataError)
def _(env):
    path = env.file("reviews.xlsx", b"PK\x03\x04")
    return env.finetune(data=path), [path, "unknown format '.xlsx'", "use one of", ".csv"]


@case("non-utf8-bytes", DataError)
def _(env):
    path = env.file("latin1.csv", "text,label\ncaf\xe9 good,pos\n".encode("latin-1"))
    return env.finetune(data=path), [path, "not UTF-8 (line 2", "re-save it as UTF-8"]


@case("broken-json", DataError)
def _(env):
    path = env.file("broken.json", '[{"text": ')
    return env.finetune(data=path), [path, "not valid JSON (line 1"]


@case("data-is-a-directory", DataError)
def _(env):
    (env.tmp / "folder").mkdir()
    return env.finetune(data=str(env.tmp / "folder")), ["is a directory", "pass a data file"]


@case("data-of-unsupported-type", DataError)
def _(env):
    return env.finetune(data=42), ["unsupported type int", "pass a path"]


@case("data-missing", DataError)
def _(env):
    return env.finetune(data=None), ["data is required", "pass a file path"]


@case("no-text-column", DataError)
def _(env):
    rows = [{"foo": "x", "label": "a"}] * 4
    return env.finetune(data=rows), ["no text column", "columns are: foo, label", "text_column="]


@case("misspelled-text-column", DataError)
def _(env):
    path = env.file("d.csv", "sentence,label\nfine,pos\nbad,neg\n")
    return env.finetune(data=path, text_column="sentense"), [
        "has no column 'sentense'",
        "did you mean 'sentence'",
        "text_column=",
    ]


@case("misspelled-label-column", DataError)
def _(env):
    return env.finetune(data=ROWS, label_column="lable"), [
        "no column 'lable'",
        "did you mean 'label'",
    ]


@case("empty-dataset", DataError)
def _(env):
    return env.finetune(data=[]), ["data is empty", "no records"]


@case("header-only-csv", DataError)
def _(env):
    path = env.file("header.csv", "text,label\n")
    return env.finetune(data=path), [path, "header but no records", "add data rows"]


@case("empty-file", DataError)
def _(env):
    path = env.file("empty.jsonl", "")
    return env.finetune(data=path), [path, "is empty"]


@case("empty-string-text", DataError)
def _(env):
    rows = [*ROWS, {"text": "", "label": "pos"}]
    return env.finetune(data=rows), ["record 12", "column 'text'", "fill in its text"]


@case("nan-label", DataError)
def _(env):
    path = env.file("nan.csv", "text,label\ngood,pos\nbad,\nok,neg\n")
    return env.finetune(data=path), [path, "record 1 has no label", "fill in the label"]


@case("label-unseen-at-training", DataError)
def _(env):
    return env.finetune(data=ROWS, eval_data=[{"text": "meh", "label": "neutral"}]), [
        "label 'neutral'",
        "not seen in the training data",
        "known labels: neg, pos",
        "add examples of it",
    ]


@case("one-label-only", DataError)
def _(env):
    rows = [{"text": f"a {i}", "label": "x"} for i in range(4)]
    return env.finetune(data=rows, eval_split=0), ["only one label ('x')", "at least two"]


@case("string-score-for-regression", DataError)
def _(env):
    rows = [{"text": "a", "label": 0.5}, {"text": "b", "label": "high"}] * 3
    return env.finetune(data=rows, problem="regression"), [
        "label 'high'",
        "problem='regression' needs numbers",
    ]


@case("scalar-label-for-multi-label", DataError)
def _(env):
    rows = [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": 5}] * 3
    return env.finetune(data=rows, problem="multi_label"), [
        "record 1 has label 5, a int",
        "problem='multi_label' needs a list of labels, e.g. ['5']",
    ]


@case("eval-split-leaves-nothing", DataError)
def _(env):
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    return env.finetune(data=rows), ["leaves no evaluation data", "eval_split=0"]


# names and options -----------------------------------------------------------------------


@case("unknown-task", UnknownNameError)
def _(env):
    return env.finetune("clasify", data=ROWS), ["unknown task 'clasify'", "did you mean 'classify'"]


@case("unknown-strategy", UnknownNameError)
def _(env):
    return env.finetune(data=ROWS, strategy="lorra"), [
        "unknown strategy 'lorra'",
        "did you mean 'lora'",
        "Known strategies:",
    ]


@case("unknown-model-alias", UnknownNameError)
def _(env):
    return env.finetune(data=ROWS, model="minilmm"), [
        "unknown model 'minilmm'",
        "did you mean 'minilm'",
        "local directory also works",
    ]


@case("misspelled-option", ConfigError)
def _(env):
    return env.finetune(data=ROWS, learning_rat=1e-3), [
        "unknown option 'learning_rat'",
        "did you mean 'learning_rate'",
    ]


@case("negative-epochs", ConfigError)
def _(env):
    return env.finetune(data=ROWS, epochs=-1), ["epochs=-1", "must be > 0"]


@case("batch-size-0", ConfigError)
def _(env):
    return env.finetune(data=ROWS, batch_size=0), ["batch_size=0", "must be > 0"]


@case("unknown-precision", ConfigError)
def _(env):
    return env.finetune(data=ROWS, precision="fp64"), ["precision='fp64'", "'bf16'"]


@case("fp16-on-cpu", ConfigError)
def _(env):
    if __import__("torch").cuda.is_available():
        pytest.skip("fp16 works where there is a GPU")
    return env.finetune(data=ROWS, precision="fp16"), ["fp16' needs a GPU", "precision='bf16'"]


@case("max-length-over-model-limit", ConfigError)
def _(env):
    return env.finetune(data=ROWS, max_length=4096), [
        "max_length=4096",
        "128 positions",
        "use max_length<=128",
    ]


@case("top-k-over-layer-count", ConfigError)
def _(env):
    return env.finetune(data=ROWS, strategy="top-k", k=10), ["k=10", "2 layers", "use k<=2"]


@case("lora-targets-match-nothing", ConfigError)
def _(env):
    return env.finetune(data=ROWS, strategy="lora", target_modules=["nothing"]), [
        "target_modules ['nothing']",
        "named query, key, value",
    ]


@case("class-weight-for-unknown-label", ConfigError)
def _(env):
    return env.finetune(data=ROWS, class_weights={"pos": 1, "neutral": 2}), [
        "['neutral']",
        "labels: ['neg', 'pos']",
    ]


# output directories ----------------------------------------------------------------------


@case("output-dir-is-a-file", ConfigError)
def _(env):
    path = env.file("taken", "x")
    env.out = Path(path)
    return env.finetune(data=ROWS), [f"output_dir {path} is a file", "pass a directory path"]


@case("output-dir-under-a-file", ConfigError)
def _(env):
    blocker = env.file("blocker", "x")
    env.out = Path(blocker) / "run"
    return env.finetune(data=ROWS), [f"{blocker} is a file", "pass another directory path"]


@case("read-only-output-dir", ConfigError)
def _(env):
    env.out = read_only_dir(env.tmp) / "run"
    return env.finetune(data=ROWS), [
        f"output_dir {env.out} is not writable",
        "choose a writable directory",
    ]


# plugins ----------------------------------------------------------------------------------


@case("tagging-token-tag-length-mismatch", DataError)
def _(env):
    rows = [{"tokens": ["john", "lives", "in", "paris"], "tags": ["B-PER", "O", "O"]}] * 4
    return env.finetune("token-tagging", data=rows), [
        "record 0 has 4 tokens but 3 tags",
        "exactly one tag",
    ]


@case("tagging-unknown-scheme", ConfigError)
def _(env):
    rows = [{"tokens": ["john", "lives"], "tags": ["B-PER", "O"]}] * 4
    return env.finetune("token-tagging", data=rows, scheme="bioo"), [
        "scheme='bioo'",
        "iob2",
        "bioes",
    ]


@case("tagging-conll-without-sentences", DataError)
def _(env):
    path = env.file("empty.conll", "\n\n")
    return env.finetune("ner", data=path), [path, "has no sentences"]


@case("pair-missing-second-text-column", DataError)
def _(env):
    rows = [{"text_a": "how old are you", "label": 1}] * 4
    return env.finetune("pair-sim", data=rows), [
        "no pair of text columns",
        "columns are: text_a, label",
        "text_columns=",
    ]


@case("pair-tsv-row-with-missing-field", DataError)
def _(env):
    path = env.file("pairs.tsv", "how old are you\twhat is your age\t1\nonly one field\n")
    return env.finetune("pair-sim", data=path), [path, "line 2", "expected 3"]


@case("sts-string-score", DataError)
def _(env):
    rows = [{"sentence1": "a cat", "sentence2": "the cat", "score": "high"}] * 4
    return env.finetune("sts", data=rows), ["score 'high'", "not a number", "task='pair-sim'"]


@case("pair-cls-label-unseen-at-training", DataError)
def _(env):
    rows = [
        {"premise": "a cat sat", "hypothesis": "the cat sat", "label": "entailment"},
        {"premise": "a cat sat", "hypothesis": "how old are you", "label": "neutral"},
    ] * 3
    bad = [{"premise": "a cat", "hypothesis": "no cat", "label": "contradiction"}]
    return env.finetune("pair-cls", data=rows, eval_data=bad), [
        "label 'contradiction'",
        "eval_data record 0",
        "known labels: entailment, neutral",
    ]


@case("fill-mask-only-empty-texts", DataError)
def _(env):
    return env.finetune("fill-mask", data=["", "  ", ""]), ["no text", "column 'text'"]


# bundles ----------------------------------------------------------------------------------


@case("bundle-missing", BundleError)
def _(env):
    path = env.tmp / "no-bundle"
    return lambda: tunekit.load(path), [f"bundle {path} does not exist", "run.save() wrote"]


@case("bundle-from-a-newer-tunekit", BundleError)
def _(env):
    bundle = env.bundle_copy()
    edit_json(bundle / "manifest.json", lambda m: m.update(format_version=99))
    return lambda: tunekit.load(bundle), ["format version 99", "upgrade tunekit"]


@case("bundle-altered-weights", BundleError)
def _(env):
    bundle = env.bundle_copy()
    data = bytearray((bundle / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (bundle / "model.safetensors").write_bytes(bytes(data))
    return lambda: tunekit.load(bundle), [
        "was altered: model.safetensors does not match its sha256",
        "save it again",
    ]


@case("bundle-altered-metadata", BundleError)
def _(env):
    bundle = env.bundle_copy()
    edit_json(bundle / "tunekit.json", lambda m: m["training"].update(max_length=17))
    return lambda: tunekit.load(bundle), ["altered: tunekit.json", "restore the original"]


@case("bundle-with-an-extra-file", BundleError)
def _(env):
    bundle = env.bundle_copy()
    (bundle / "tokenizer" / "evil.py").write_text("import os")
    return lambda: tunekit.load(bundle), ["not in its manifest: tokenizer/evil.py", "remove them"]


@case("bundle-missing-a-file", BundleError)
def _(env):
    bundle = env.bundle_copy()
    (bundle / "history.json").unlink()
    return lambda: tunekit.load(bundle), ["partial: history.json is missing", "copy the whole"]


@case("bundle-manifest-escapes-the-bundle", BundleError)
def _(env):
    bundle = env.bundle_copy()
    edit_json(bundle / "manifest.json", lambda m: m["files"].update({"../outside": "0" * 64}))
    return lambda: tunekit.load(bundle), ["unsafe path '../outside'", "refusing to load"]


@case("bundle-of-an-uninstalled-plugin", BundleError)
def _(env):
    bundle = env.bundle_copy()
    edit_json(bundle / "tunekit.json", lambda m: m["task"].update(name="shout"))
    reseal(bundle)
    return lambda: tunekit.load(bundle), [
        "needs a plugin that is not installed",
        "unknown task 'shout'",
        "tunekit plugins",
    ]


@case("partial-bundle-of-a-killed-save", BundleError)
def _(env):
    partial = env.tmp / ".bundle.0123abcd.partial"
    shutil.copytree(env.shared_bundle, partial)
    (partial / "manifest.json").unlink()  # the manifest is written last
    return lambda: tunekit.load(partial), ["manifest.json is missing", "partial"]


@case("bundle-for-a-different-base-model", BundleError)
def _(env):
    base = env.tmp / "base"
    make_tiny_model(base, [WORDS], seed=0)
    run = tunekit.finetune(
        "classify", data=ROWS, model=str(base), strategy="lora", eval_split=0, **FAST
    )
    bundle = Path(run.save(env.tmp / "lora-bundle"))
    shutil.rmtree(base)
    make_tiny_model(base, [WORDS], seed=1)  # same name and shape, other weights
    return lambda: tunekit.load(bundle), [
        "trained on base model",
        "weights sha256",
        "load it where the same base model is available",
    ]


# the command line -------------------------------------------------------------------------


@case("cli-finetune-without-task", ConfigError)
def _(env):
    return env.cli("finetune", "--data", "x.csv", "--output", str(env.out)), [
        "--task is required",
        "tunekit tasks",
    ]


@case("cli-missing-config-file", ConfigError)
def _(env):
    path = str(env.tmp / "options.yaml")
    return env.cli("finetune", "--task", "classify", "--config", path), [path, "not found"]


@case("cli-predict-missing-input-file", ConfigError)
def _(env):
    path = str(env.tmp / "inputs.txt")
    return env.cli("predict", str(env.shared_bundle), "--input", path), [
        f"--input file {path} not found"
    ]


@case("cli-unwritable-output", ConfigError)
def _(env):
    data = env.file("d.csv", "text,label\ngood,pos\nbad,neg\n")
    env.out = read_only_dir(env.tmp) / "bundle"
    return env.cli(
        "finetune",
        "--task",
        "classify",
        "--data",
        data,
        "--model",
        env.tiny,
        "--output",
        str(env.out),
    ), [f"--output {env.out} is not writable", "choose a writable directory"]


# issue 15 §4: options whose type or value was unchecked (raw tracebacks before) -------------


@case("seed-negative", ConfigError)
def _(env):
    return env.finetune(data=ROWS, seed=-1), ["seed=-1", "from 0 to 4294967295", "seed=42"]


@case("seed-not-a-number", ConfigError)
def _(env):
    return env.finetune(data=ROWS, seed="abc"), ["seed='abc'", "whole number (int)", "not str"]


@case("epochs-as-a-string", ConfigError)
def _(env):
    return env.finetune(data=ROWS, epochs="2"), [
        "epochs='2' (training)",
        "whole number (int)",
        "write epochs=2 (a number, without quotes)",
    ]


@case("epochs-fractional", ConfigError)
def _(env):  # ran 2 epochs silently before
    return env.finetune(data=ROWS, epochs=1.5), ["epochs=1.5", "whole number (int)", "e.g. epochs="]


@case("hidden-as-a-string", ConfigError)
def _(env):
    return env.finetune(data=ROWS, head="mlp", hidden="abc"), [
        "hidden='abc' (task 'classify')",
        "a list of whole numbers (int)",
        "hidden=[512]",
    ]


@case("strategy-option-as-a-string", ConfigError)
def _(env):
    return env.finetune(data=ROWS, strategy="lora", r="8"), [
        "r='8' (strategy 'lora')",
        "write r=8",
    ]


@case("plugin-task-option-of-wrong-type", ConfigError)
def _(env):
    rows = [{"tokens": ["john", "lives"], "tags": ["B-PER", "O"]}] * 4
    return env.finetune("ner", data=rows, dropout="high"), [
        "dropout='high' (task 'token-tagging')",
        "must be a number",
    ]


@case("classify-chunk-negative-stride", ConfigError)
def _(env):
    return env.finetune(data=ROWS, long_text="chunk", stride=-5), ["stride=-5", "must be >= 0"]


@case("tagging-negative-stride", ConfigError)
def _(env):  # accepted silently before
    rows = [{"tokens": ["john", "lives"], "tags": ["B-PER", "O"]}] * 4
    return env.finetune("ner", data=rows, stride=-1), ["'stride' must be >= 0", "-1"]


@case("predict-negative-batch-size", ConfigError)
def _(env):
    run = tunekit.load(env.shared_bundle)
    return lambda: run.predict(["good film"], batch_size=-1), ["batch_size=-1", "must be >= 1"]


@case("cli-predict-negative-batch-size", ConfigError)
def _(env):
    return env.cli("predict", str(env.shared_bundle), "good film", "--batch-size", "-1"), [
        "--batch-size=-1",
        "must be >= 1",
    ]


@case("cli-predict-latin1-input-file", DataError)
def _(env):
    path = env.file("inputs.txt", "good film\ncaf\xe9 night\n".encode("latin-1"))
    return env.cli("predict", str(env.shared_bundle), "--input", path), [
        f"--input file {path} is not UTF-8 (line 2",
        "re-save it as UTF-8",
    ]


@case("qa-predict-top-k-not-a-number", ConfigError)
def _(env):
    context = "paris is the capital of france"
    rows = [
        {
            "question": "what is the capital of france",
            "context": context,
            "answers": {"text": ["paris"], "answer_start": [0]},
        }
    ] * 4
    run = tunekit.finetune(
        "qa", data=rows, model=env.tiny, eval_split=0, **{**FAST, "max_length": 32}
    )
    return lambda: run.predict(("who", context), top_k="x"), [
        "top_k='x'",
        "whole number (int) >= 1",
        "top_k=3",
    ]


@case("predict-threshold-on-a-single-label-model", ConfigError)
def _(env):  # ignored before
    run = tunekit.load(env.shared_bundle)
    return lambda: run.predict(["good film"], threshold=0.9), [
        "threshold=0.9",
        "applies to multi-label models",
        "single-label",
        "Drop threshold=",
    ]


# issue 15 §4: data files (no line number before) and silently wrong records ----------------


@case("csv-row-with-an-extra-field", DataError)
def _(env):
    path = env.file("ragged.csv", "text,label\ngood film,pos\nbad film,neg,oops\n")
    return env.finetune(data=path), [path, "line 3 has 3 fields", "header has 2 (text, label)"]


@case("csv-row-with-a-missing-field", DataError)
def _(env):
    path = env.file("short.csv", "text,label\ngood film,pos\n\nbad film\n")
    return env.finetune(data=path), [path, "line 4 has 1 fields", "fix that row"]


@case("jsonl-line-not-json", DataError)
def _(env):
    path = env.file("bad.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad", "label":\n')
    return env.finetune(data=path), [path, "line 2 is not valid JSON", "fix that line"]


@case("jsonl-line-not-an-object", DataError)
def _(env):
    path = env.file("list.jsonl", '{"text": "good", "label": "pos"}\n\n["bad", "neg"]\n')
    return env.finetune(data=path), [path, "line 3 is a JSON list, not an object"]


@case("csv-duplicate-column", DataError)
def _(env):  # the first 'label' was used before
    path = env.file("dup.csv", "text,label,label\ngood,pos,neg\nbad,neg,pos\n")
    return env.finetune(data=path), [path, "two columns named 'label'", "rename one"]


@case("dataframe-duplicate-column", DataError)
def _(env):  # the last 'label' was used before
    import pandas as pd

    frame = pd.DataFrame([["good", "pos", "neg"], ["bad", "neg", "pos"]] * 3)
    frame.columns = ["text", "label", "label"]
    return env.finetune(data=frame), ["data (a DataFrame)", "two columns named 'label'"]


@case("dict-label", DataError)
def _(env):  # trained on the dicts' repr before
    rows = [{"text": r["text"], "label": {"name": r["label"]}} for r in ROWS]
    return env.finetune(data=rows), [
        "record 0 has label {'name': 'neg'}",
        "a dict",
        "a string or a number",
    ]


@case("regression-with-constant-labels", DataError)
def _(env):  # trained (on nothing) before
    rows = [{"text": r["text"], "label": 0.5} for r in ROWS]
    return env.finetune(data=rows), ["every training label is 0.5", "labels that vary"]


@case("early-stopping-without-eval-data", ConfigError)
def _(env):  # ignored before
    return env.finetune(data=ROWS, eval_split=0, early_stopping_patience=1), [
        "early_stopping_patience=1 needs evaluation data",
        "eval_data=",
    ]


@case("checkpoint-steps-without-output-dir", ConfigError)
def _(env):  # ignored before
    return env.finetune(data=ROWS, output_dir=None, checkpoint_steps=1), [
        "checkpoint_steps=1 needs output_dir",
        "pass output_dir",
    ]


@case("max-length-below-special-tokens", ConfigError)
def _(env):  # fill-mask trained with loss 0.0 before
    return env.finetune("fill-mask", data=["the cat sat on the mat"] * 8, max_length=2), [
        "max_length=2 leaves no room for text",
        "adds 3 special tokens",
        "max_length>=4",
    ]


@case("qa-negative-answer-start", DataError)
def _(env):  # trained as "no answer" before, even with allow_unanswerable=False
    context = "paris is the capital of france"
    rows = [
        {
            "question": "what is the capital of france",
            "context": context,
            "answers": {"text": ["paris"], "answer_start": [-len(context)]},
        }
    ] * 4
    return env.finetune("qa", data=rows, max_length=32), [
        "record 0",
        "answer_start=-30",
        "negative",
        "fix_answer_start=True",
    ]


@case("ner-typo-tag-in-entity-data", DataError)
def _(env):  # switched the whole task to plain tags before
    rows = [{"tokens": ["john", "lives", "in", "paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}] * 5
    rows.append({"tokens": ["john", "sat"], "tags": ["X-PER", "O"]})
    return env.finetune("ner", data=rows), [
        "record 5 token 0 ('john') has tag 'X-PER'",
        "not an entity tag",
        "tag_kind='tags'",
    ]


@case("ner-typo-tag-in-a-conll-file", DataError)
def _(env):
    conll = "john B-PER\nlives O\nin O\nparis B-LOC\n\nmary B-PER\nsat O\n\nparis X-LOC\n"
    path = env.file("train.conll", conll)
    return env.finetune("ner", data=path), [f"{path} line 9", "'X-LOC'", "Fix the tag"]


# ---- the test ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    tiny = make_tiny_model(root / "tiny", [WORDS])
    run = tunekit.finetune("classify", data=ROWS, model=tiny, strategy="lora", eval_split=0, **FAST)
    return tiny, Path(run.save(root / "bundle"))


def snapshot(*roots: Path) -> dict[str, tuple[int, str]]:
    """Every file and directory under *roots*: mode and content hash."""
    seen: dict[str, tuple[int, str]] = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            seen[str(path)] = (st.st_mode, digest)
    return seen


@pytest.fixture(autouse=True)
def _writable_again(tmp_path):
    yield
    if (tmp_path / "read-only").is_dir():
        (tmp_path / "read-only").chmod(0o755)


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize(("make", "error"), CASES)
def test_bad_input_is_a_clear_error_and_leaves_nothing_behind(make, error, shared, tmp_path):
    tunekit.plugins.reset()
    tiny, bundle = shared
    env = Env(tmp_path, tiny, bundle)
    call, fragments = make(env)
    before = snapshot(tmp_path, bundle.parent)  # the shared tiny model and bundle too
    with pytest.raises(error) as raised:
        call()
    assert isinstance(raised.value, TunekitError)
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in the message: {message}"
    assert not env.out.exists() or env.out.is_file()
    after = snapshot(tmp_path, bundle.parent)
    assert after == before, f"changed: {sorted(set(after.items()) ^ set(before.items()))[:5]}"


class _ExitingEntryPoint:
    """An entry point whose module calls ``sys.exit()`` while it is imported."""

    name = "exiting_plugin"
    dist = None

    def load(self):
        raise SystemExit(3)


@pytest.mark.parametrize("command", [["doctor"], ["plugins"], ["tasks"]])
def test_a_plugin_calling_sys_exit_on_import_is_reported_not_fatal(command, monkeypatch, capsys):
    # before: SystemExit escaped plugin loading, so every command (doctor included) ended
    # silently with status 3
    monkeypatch.setattr(
        tunekit.plugins,
        "entry_points",
        lambda group: [_ExitingEntryPoint()] if group == tunekit.plugins.ENTRY_POINT_GROUP else [],
    )
    tunekit.plugins.reset()
    try:
        with warnings.catch_warnings():  # the PluginWarning; the record is checked below
            warnings.simplefilter("ignore", tunekit.plugins.PluginWarning)
            status = cli.main(command)
        out = capsys.readouterr().out
        failed = {r.name: r.error for r in tunekit.plugins.get_state().records if r.error}
    finally:
        tunekit.plugins.reset()
    assert failed == {"exiting_plugin": "SystemExit: the plugin called sys.exit(3)"}
    if command == ["tasks"]:
        assert status == 0 and "classify" in out  # the other plugins keep working
    else:
        assert "exiting_plugin" in out and "sys.exit(3)" in out
        assert status == (1 if command == ["doctor"] else 0)


def test_na_in_a_csv_label_column_is_a_label_not_a_missing_value(shared, tmp_path):
    # before: pandas read 'NA' as missing and the record was refused ("record 1 has no label")
    tiny, _ = shared
    rows = "".join(f"good film {i},pos\nbad film {i},NA\n" for i in range(4))
    path = tmp_path / "na.csv"
    path.write_text("text,label\n" + rows + "NA,pos\n", encoding="utf-8")
    task = tunekit.get_task("classify")()
    records = task.read(str(path))
    assert [r["label"] for r in records[:2]] == ["pos", "NA"] and records[-1]["text"] == "NA"
    run = tunekit.finetune("classify", data=str(path), model=tiny, eval_split=0, **FAST)
    assert run.labels == ("NA", "pos")
    empty = tmp_path / "empty-label.csv"
    empty.write_text("text,label\ngood,pos\nbad,\n", encoding="utf-8")
    with pytest.raises(DataError, match="record 1 has no label"):
        task.read(str(empty))
