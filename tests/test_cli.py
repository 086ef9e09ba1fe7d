"""The tunekit command line, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tunekit.cli import parse_extra_options
from tunekit.errors import ConfigError


def tunekit(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tunekit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_parse_extra_options_types_and_flags():
    opts = parse_extra_options(
        [
            "--batch-size",
            "32",
            "--learning-rate=3e-5",
            "--no-progress",
            "--hidden",
            "[256, 128]",
            "--text-column",
            "review",
        ]
    )
    assert opts == {
        "batch_size": 32,
        "learning_rate": 3e-5,
        "progress": False,
        "hidden": [256, 128],
        "text_column": "review",
    }
    with pytest.raises(ConfigError):
        parse_extra_options(["positional"])


def test_version_and_listings():
    out = tunekit("--version")
    assert out.returncode == 0 and out.stdout.startswith("tunekit ")
    tasks = tunekit("tasks")
    assert tasks.returncode == 0 and "classify" in tasks.stdout
    assert "full" in tunekit("strategies").stdout
    models = tunekit("models").stdout
    assert "ernie-gram" in models and "nghuyong/ernie-gram-zh" in models and "minilm" in models
    assert "tunekit.classify" in tunekit("plugins").stdout


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "reviews.csv"
    rows = ["review,sentiment"]
    for i in range(24):
        rows += [f"a wonderful great film number {i},pos", f"a dull awful mess number {i},neg"]
    data.write_text("\n".join(rows) + "\n")
    out = root / "bundle"
    result = tunekit(
        "finetune", "--task", "classify", "--data", str(data), "--output", str(out),
        "--epochs", "2", "--batch-size", "8", "--max-length", "16", "--learning-rate", "1e-4",
        "--plots", str(root / "plots"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "train_loss" in result.stdout and "accuracy" in result.stdout
    assert (root / "plots" / "learning_curve.png").stat().st_size > 1000
    # the confusion matrix on the same held-out split finetune() evaluated on
    assert (root / "plots" / "confusion_matrix.png").stat().st_size > 1000
    assert "confusion matrix:" in result.stdout
    return root, data, out


def test_finetune_predict_evaluate(trained_bundle):
    root, data, out = trained_bundle
    pred = tunekit("predict", str(out), "what a wonderful great film", "a dull awful mess")
    assert pred.returncode == 0, pred.stderr
    lines = [json.loads(line) for line in pred.stdout.splitlines()]
    assert [p["label"] for p in lines] == ["pos", "neg"]
    inputs = root / "inputs.txt"
    inputs.write_text("a wonderful great film\n\na dull awful mess\n")
    from_file = tunekit("predict", str(out), "--input", str(inputs))
    assert [json.loads(x)["label"] for x in from_file.stdout.splitlines()] == ["pos", "neg"]
    # predict() options pass through --option NAME=VALUE; an unknown one is refused by name
    # threshold= is a multi-label option: on this single-label model it is refused, not ignored
    same = tunekit("predict", str(out), "a dull awful mess", "--option", "threshold=0.5")
    assert same.returncode != 0 and "threshold=0.5 applies to multi-label" in same.stderr
    bogus = tunekit("predict", str(out), "a dull awful mess", "-o", "top_k=3")
    assert bogus.returncode != 0 and "top_k" in bogus.stderr and "threshold" in bogus.stderr
    malformed = tunekit("predict", str(out), "a dull awful mess", "--option", "top_k")
    assert malformed.returncode != 0 and "NAME=VALUE" in malformed.stderr
    ev = tunekit("evaluate", str(out), "--data", str(data))
    assert ev.returncode == 0, ev.stderr
    metrics = dict(line.split("\t") for line in ev.stdout.splitlines())
    assert float(metrics["accuracy"]) > 0.9


def test_errors_are_one_line_and_nonzero(tmp_path):
    missing = tunekit("finetune", "--task", "classify", "--data", str(tmp_path / "nope.csv"))
    assert missing.returncode == 1
    assert "nope.csv" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    typo = tunekit("finetune", "--task", "clasify", "--data", "x.csv")
    assert typo.returncode == 1 and "did you mean 'classify'" in typo.stderr
    bad_opt = tunekit("finetune", "--task", "classify", "--data", "x.csv", "--epochz", "2")
    assert bad_opt.returncode == 1 and "epochs" in bad_opt.stderr
    not_bundle = tunekit("predict", str(tmp_path), "text")
    assert not_bundle.returncode == 1 and "manifest.json" in not_bundle.stderr
    debug = tunekit("--debug", "predict", str(tmp_path), "text")
    assert debug.returncode != 0 and "Traceback" in debug.stderr
