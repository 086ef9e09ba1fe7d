"""The trainer and ``classify`` on a tiny random BERT: the loss falls for single-label,
multi-label and regression; class weights; long texts in chunks; the history table and
its plot; seeded reproducibility; NaN handling; resume from checkpoints."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tunekit
from tunekit.classify import ClassifyTask
from tunekit.errors import ConfigError, TrainingError
from tunekit.inference import compute_outputs
from tunekit.testing import make_tiny_model

GOOD = ["good", "great", "fine", "superb", "lovely", "wonderful"]
BAD = ["bad", "awful", "poor", "dull", "boring", "terrible"]
FILLER = ["the", "film", "was", "a", "plot", "cast", "story", "really"]
SPORTS = ["goal", "match", "team", "coach"]
POLITICS = ["vote", "senate", "party", "minister"]


def sentence(rng, words, n=3):
    picked = rng.sample(words, n) + rng.sample(FILLER, 3)
    rng.shuffle(picked)
    return " ".join(picked)


def single_rows(n=48, seed=0):
    rng = random.Random(seed)
    return [
        {"text": sentence(rng, GOOD if i % 2 else BAD), "label": "pos" if i % 2 else "neg"}
        for i in range(n)
    ]


def multi_rows(n=48, seed=1):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        labels = [["sports"], ["politics"], ["sports", "politics"]][i % 3]
        words = (SPORTS if "sports" in labels else []) + (POLITICS if "politics" in labels else [])
        rows.append({"text": sentence(rng, words, 2), "label": labels})
    return rows


def regression_rows(n=48, seed=2):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = i % 4  # 0..3 good words out of 3 → score k / 3
        words = rng.sample(GOOD, k) + rng.sample(BAD, 3 - k)
        rng.shuffle(words)
        rows.append({"text": " ".join(words + rng.sample(FILLER, 2)), "label": k / 3 + 0.01})
    return rows


ALL_TEXTS = [" ".join(GOOD + BAD + FILLER + SPORTS + POLITICS)]
FAST = dict(max_length=32, batch_size=8, learning_rate=2e-3, warmup_ratio=0.0, progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert", ALL_TEXTS)


@pytest.fixture(autouse=True)
def _fresh_plugins():
    tunekit.plugins.reset()


def weights(run):
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- loss falls ------------------------------------------------------------------------


def test_single_label_loss_falls_and_history_table(tiny, tmp_path):
    run = tunekit.finetune(
        task="classify", data=single_rows(), model=tiny, epochs=4, eval_split=0.25, **FAST
    )
    history = run.history
    losses = history.column("train_loss")
    assert len(history) == 4 and history.column("epoch") == [1, 2, 3, 4]
    assert losses[-1] < losses[0] * 0.8, losses
    assert history.column("eval_loss")[-1] < math.log(2)
    assert run.metrics["accuracy"] >= 0.75
    assert history.columns == [
        "epoch",
        "step",
        "train_loss",
        "eval_loss",
        "accuracy",
        "macro_f1",
        "mcc",
        "seconds",
    ]
    df = history.to_pandas()
    assert list(df.columns) == history.columns and len(df) == 4
    assert df["step"].tolist() == [5, 10, 15, 20]  # 36 training records / batch 8
    assert history.to_list()[0]["epoch"] == 1
    text = str(history)
    assert text.splitlines()[0].split() == history.columns and len(text.splitlines()) == 5
    assert history.info["trainable_params"] == history.info["total_params"] > 0
    path = run.plot(tmp_path / "plots" / "curve.png")
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    prediction = run.predict("good great superb film")
    assert set(prediction) == {"label", "score", "probabilities"}
    assert prediction["label"] == "pos" and prediction["score"] == max(
        prediction["probabilities"].values()
    )
    assert [
        p["label"] for p in run.predict(["awful dull poor plot", "lovely wonderful fine cast"])
    ] == ["neg", "pos"]


def test_same_seed_gives_identical_weights(tiny):
    rows = single_rows(24)
    opts = dict(model=tiny, epochs=1, eval_split=0, **FAST)
    a = weights(tunekit.finetune(task="classify", data=rows, seed=3, **opts))
    b = weights(tunekit.finetune(task="classify", data=rows, seed=3, **opts))
    c = weights(tunekit.finetune(task="classify", data=rows, seed=4, **opts))
    assert same_weights(a, b)
    assert not same_weights(a, c)


def test_evaluation_does_not_change_the_training_trajectory(tiny):
    """Evaluating between epochs draws no random numbers: the dropout masks and batch
    order of training are the same with and without evaluation, so the per-epoch training
    losses are equal. (An evaluation loader that seeds itself from the global torch RNG
    shifts every later dropout mask and fails this.)"""
    rows = single_rows(32)
    opts = dict(model=tiny, data=rows, epochs=3, seed=5, **FAST)
    evaluated = tunekit.finetune(task="classify", eval_data=single_rows(16, seed=9), **opts)
    plain = tunekit.finetune(task="classify", eval_split=0, **opts)
    assert "eval_loss" in evaluated.history.columns
    assert "eval_loss" not in plain.history.columns
    assert evaluated.history.column("train_loss") == plain.history.column("train_loss")


def test_multi_label(tiny):
    opts = {**FAST, "learning_rate": 5e-3}
    run = tunekit.finetune(
        task="classify", data=multi_rows(), model=tiny, epochs=6, eval_split=0.25, **opts
    )
    assert run.task.schema.kind == "multi_label" and run.labels == ("politics", "sports")
    losses = run.history.column("train_loss")
    assert losses[-1] < losses[0] * 0.75, losses
    assert {"eval_loss", "micro_f1", "macro_f1", "subset_accuracy"} <= set(run.metrics)
    assert run.metrics["micro_f1"] > 0.6
    prediction = run.predict("goal match team senate vote")
    assert isinstance(prediction["label"], list) and set(prediction["probabilities"]) == {
        "politics",
        "sports",
    }
    assert all(prediction["probabilities"][label] >= 0.5 for label in prediction["label"])
    everything = run.predict("goal match", threshold=0.0)
    assert everything["label"] == ["politics", "sports"]


def test_multi_label_from_separated_strings(tiny):
    rows = [{"text": r["text"], "label": "|".join(r["label"])} for r in multi_rows(12)]
    run = tunekit.finetune(
        task="classify",
        data=rows,
        model=tiny,
        epochs=1,
        eval_split=0,
        problem="multi_label",
        **FAST,
    )
    assert run.labels == ("politics", "sports")


def test_regression(tiny):
    run = tunekit.finetune(
        task="classify", data=regression_rows(), model=tiny, epochs=5, eval_split=0.25, **FAST
    )
    assert run.task.schema.kind == "regression"
    losses = run.history.column("train_loss")
    assert losses[-1] < losses[0] * 0.8, losses
    assert {"pearson", "spearman", "mse", "eval_loss"} <= set(run.metrics)
    assert run.metrics["pearson"] > 0.5, run.metrics
    good, bad = run.predict(["good great superb film", "bad awful poor film"])
    assert isinstance(good["label"], float) and good["label"] == good["score"]
    assert good["score"] > bad["score"]


def test_regression_rejects_class_weights(tiny):
    with pytest.raises(ConfigError, match="class_weights cannot be used with regression"):
        tunekit.finetune(
            task="classify", data=regression_rows(8), model=tiny, class_weights="balanced", **FAST
        )


# ---- class weights ---------------------------------------------------------------------


def imbalanced_rows():
    return single_rows(40)[:30] + [r for r in single_rows(40, seed=5) if r["label"] == "pos"][:6]


def test_class_weights_balanced_and_explicit(tiny):
    rows = imbalanced_rows()
    counts = {
        "neg": sum(r["label"] == "neg" for r in rows),
        "pos": sum(r["label"] == "pos" for r in rows),
    }
    run = tunekit.finetune(
        task="classify",
        data=rows,
        model=tiny,
        epochs=1,
        eval_split=0,
        class_weights="balanced",
        **FAST,
    )
    expected = [len(rows) / (2 * counts["neg"]), len(rows) / (2 * counts["pos"])]
    assert run.task.weights == pytest.approx(expected)
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]])
    labels = torch.tensor([1, 0, 1])
    got = run.task.loss({"logits": logits}, {"labels": labels})
    assert torch.allclose(got, F.cross_entropy(logits, labels, weight=torch.tensor(expected)))
    assert not torch.allclose(got, F.cross_entropy(logits, labels))

    task = ClassifyTask(ClassifyTask.Config(class_weights={"pos": 3.0}))
    task.setup(rows)
    assert task.weights == [1.0, 3.0]
    with pytest.raises(ConfigError, match="names labels not in the data"):
        ClassifyTask(ClassifyTask.Config(class_weights={"neutral": 2.0})).setup(rows)
    with pytest.raises(ConfigError, match="class_weights='heavy'"):
        ClassifyTask(ClassifyTask.Config(class_weights="heavy")).setup(rows)


def test_multi_label_balanced_weights_are_pos_weights():
    rows = [{"text": "x", "label": ["a"]}] * 3 + [{"text": "y", "label": ["a", "b"]}]
    task = ClassifyTask(ClassifyTask.Config(class_weights="balanced"))
    task.setup(rows)
    assert task.weights == [0.0, 3.0]  # (negatives / positives) per label


# ---- long texts ------------------------------------------------------------------------


def test_long_text_chunk_averages_window_logits(tiny):
    rows = single_rows(24)
    run = tunekit.finetune(
        task="classify",
        data=rows,
        model=tiny,
        epochs=1,
        eval_split=0,
        long_text="chunk",
        stride=4,
        **{**FAST, "max_length": 16},
    )
    long_text = " ".join(single_rows(8)[i]["text"] for i in range(8))  # ~50 tokens
    records = run.task.parse_inputs([long_text, "good film"])
    features = run.task.encode(records, run.tokenizer, max_length=16, with_labels=False)
    windows = [f for f in features if f["example_index"] == 0]
    assert len(windows) >= 3 and all(len(f["input_ids"]) <= 16 for f in windows)
    assert [f["example_index"] for f in features].count(1) == 1
    outputs, _ = compute_outputs(
        run.model, run.task, run.tokenizer, features, batch_size=8, precision=run.precision
    )
    mean = np.mean(
        [o["logits"] for o, f in zip(outputs, features) if f["example_index"] == 0], axis=0
    )
    probs = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
    prediction = run.predict([long_text, "good film"])
    assert len(prediction) == 2
    assert prediction[0]["probabilities"]["pos"] == pytest.approx(float(probs[1]), abs=1e-5)
    truncated = ClassifyTask()
    truncated.schema = run.task.schema
    assert len(truncated.encode(records, run.tokenizer, max_length=16, with_labels=False)) == 2


def test_label_unseen_at_evaluation(tiny, tmp_path):
    from tunekit.errors import DataError

    path = tmp_path / "eval.csv"
    path.write_text("text,label\ngood film,pos\nfine film,neutral\n")
    with pytest.raises(
        DataError, match="label 'neutral' in record 1 was not seen in the training data"
    ):
        tunekit.finetune(
            task="classify", data=single_rows(16), eval_data=path, model=tiny, epochs=1, **FAST
        )
    run = tunekit.finetune(
        task="classify", data=single_rows(16), model=tiny, epochs=1, eval_split=0, **FAST
    )
    with pytest.raises(DataError, match="'neutral' in record 1"):
        run.evaluate(path)


# ---- NaN -------------------------------------------------------------------------------


def nan_at(monkeypatch, calls):
    """Make ``ClassifyTask.loss`` return NaN on the given (1-based) call numbers."""
    real = ClassifyTask.loss
    counter = itertools.count(1)

    def loss(self, outputs, batch):
        value = real(self, outputs, batch)
        return value * float("nan") if next(counter) in calls else value

    monkeypatch.setattr(ClassifyTask, "loss", loss)


def test_nan_loss_raises_naming_the_step(tiny, monkeypatch):
    nan_at(monkeypatch, {3})
    with pytest.raises(TrainingError) as err:
        tunekit.finetune(
            task="classify", data=single_rows(32), model=tiny, epochs=2, eval_split=0, **FAST
        )
    msg = str(err.value)
    assert "loss became nan at epoch 1, batch 3 (global step 2)" in msg
    assert "on_nan='skip'" in msg


def test_nan_loss_skip_counts_skips(tiny, monkeypatch):
    nan_at(monkeypatch, {2, 6})
    run = tunekit.finetune(
        task="classify",
        data=single_rows(32),
        model=tiny,
        epochs=2,
        eval_split=0,
        on_nan="skip",
        **FAST,
    )
    assert run.history.info["nan_skips"] == 2
    assert run.history.column("step") == [3, 6]  # 4 batches per epoch, one skipped in each
    assert all(math.isfinite(v) for v in run.history.column("train_loss"))
    assert all(torch.isfinite(p).all() for p in run.model.parameters())


# ---- resume ----------------------------------------------------------------------------


def test_resume_gives_identical_weights_and_history(tiny, tmp_path, monkeypatch):
    rows = single_rows(40)
    opts = dict(
        model=tiny, epochs=3, eval_split=0.2, checkpoint_steps=3, keep_checkpoints=2, **FAST
    )
    reference = tunekit.finetune(task="classify", data=rows, output_dir=tmp_path / "ref", **opts)

    real = ClassifyTask.loss
    calls = itertools.count(1)

    class Interrupted(Exception):
        pass

    def crashing_loss(self, outputs, batch):
        if (
            next(calls) == 8
        ):  # epoch 2, batch 3 (4 train + 1 eval batch per epoch; checkpoints at 3, 4, 6)
            raise Interrupted
        return real(self, outputs, batch)

    monkeypatch.setattr(ClassifyTask, "loss", crashing_loss)
    out = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        tunekit.finetune(task="classify", data=rows, output_dir=out, **opts)
    monkeypatch.setattr(ClassifyTask, "loss", real)
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-00000004", "checkpoint-00000006"], checkpoints
    assert not (out / "bundle").exists()

    resumed = tunekit.finetune(task="classify", data=rows, output_dir=out, resume=True, **opts)
    assert same_weights(weights(reference), weights(resumed))

    def without_seconds(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history.rows]

    assert without_seconds(resumed.history) == without_seconds(reference.history)
    assert len(resumed.history) == 3
    assert tunekit.load(out / "bundle").predict("good film") == reference.predict("good film")


# ---- resume refuses another run ----------------------------------------------------------


def test_resume_needs_output_dir():
    with pytest.raises(ConfigError, match=r"resume=True needs output_dir"):
        tunekit.finetune(task="classify", data=single_rows(8), resume=True)


def kept_options(tiny, **changes):
    options = dict(
        task="classify", data=single_rows(40), model=tiny, epochs=2, eval_split=0.2, seed=3
    )
    return {**options, **FAST, **changes}


@pytest.fixture(scope="module")
def finished_dir(tiny, tmp_path_factory):
    """A run whose checkpoints were kept: the last one (step 8) is resumable."""
    out = tmp_path_factory.mktemp("kept") / "out"
    tunekit.finetune(output_dir=out, keep_checkpoints_after_training=True, **kept_options(tiny))
    return out


def resume_copy(finished_dir, tmp_path, tiny, **changes):
    """Resume a copy of the finished run's directory with *changes*."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(finished_dir, out)
    return out, tunekit.finetune(output_dir=out, resume=True, **kept_options(tiny, **changes))


def other_labels():
    return [{**row, "label": "good" if row["label"] == "pos" else "bad"} for row in single_rows(40)]


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"learning_rate": 1.0}, ["training.learning_rate: 0.002 → 1.0"]),
        ({"batch_size": 4}, ["training.batch_size: 8 → 4"]),
        ({"seed": 4}, ["training.seed: 3 → 4"]),
        ({"max_length": 16}, ["training.max_length: 32 → 16"]),
        ({"data": other_labels()}, ["labels:", '["neg", "pos"]', '["bad", "good"]']),
        ({"data": single_rows(40, seed=9)}, ["train_data_sha256", "eval_data_sha256"]),
        ({"strategy": "lora"}, ['strategy: "full" → "lora"']),
        ({"head": "mlp", "hidden": [8]}, ['task.head: "linear" → "mlp"']),
        ({"model": "other"}, ["backbone:", "backbone.weights_sha256"]),
    ],
    ids=["lr", "batch-size", "seed", "max-length", "labels", "data", "strategy", "head", "model"],
)
def test_resume_with_another_run_is_refused_naming_each_difference(
    tiny, finished_dir, tmp_path, changes, fragments
):
    from tunekit.errors import ResumeMismatchError

    if changes.get("model") == "other":
        changes["model"] = make_tiny_model(tmp_path / "other", ALL_TEXTS, seed=1)
    before = {
        p.relative_to(finished_dir): p.read_bytes() for p in finished_dir.rglob("*") if p.is_file()
    }
    with pytest.raises(ResumeMismatchError) as caught:
        resume_copy(finished_dir, tmp_path, tiny, **changes)
    message = str(caught.value)
    assert "belongs to another run" in message and "checkpoint-00000008" in message
    for fragment in fragments:
        assert fragment in message, message
    # nothing was written: the run's directory is byte for byte as it was left
    out = tmp_path / "out"
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_resume_may_change_how_the_run_is_watched_and_reports_it(tiny, finished_dir, tmp_path):
    # eval batch size, logging and checkpoint cadence are not part of the run
    _, run = resume_copy(
        finished_dir, tmp_path, tiny, eval_batch_size=3, logging_steps=1, checkpoint_steps=2
    )
    assert run.training.eval_batch_size == 3 and run.training.logging_steps == 1
    assert run.training.learning_rate == 2e-3  # what was used, never another value
    assert len(run.history) == 2


@pytest.mark.parametrize(
    ("file", "damage"),
    [
        ("state.json", b"{not json"),
        ("optimizer.bin", b"\x00garbage"),
        ("model.safetensors", b"\x00\x01"),
        ("random_states_0.pkl", b"garbage"),
    ],
)
def test_a_damaged_checkpoint_is_a_clear_error_naming_the_file(
    tiny, finished_dir, tmp_path, file, damage
):
    import shutil

    from tunekit.errors import CheckpointError

    out = tmp_path / "out"
    shutil.copytree(finished_dir, out)
    checkpoint = out / "checkpoints" / "checkpoint-00000008"
    (checkpoint / file).write_bytes(damage)
    with pytest.raises(CheckpointError) as caught:
        tunekit.finetune(output_dir=out, resume=True, **kept_options(tiny))
    message = str(caught.value)
    assert f"checkpoint file {checkpoint / file} is unreadable" in message, message
    assert f"Delete {checkpoint}" in message


# ---- progress ----------------------------------------------------------------------------


def test_piped_runs_show_each_epoch_row_when_it_ends_and_periodic_lines(tiny, monkeypatch, capsys):
    import tunekit.progress

    monkeypatch.setattr(tunekit.progress, "EVERY_SECONDS", 0.0)  # a line at every step
    printed: list[str] = []
    seen_at_epoch_two: list[str] = []
    real = ClassifyTask.loss
    calls = itertools.count(1)

    def loss(self, outputs, batch):
        printed.extend(capsys.readouterr().err.splitlines())
        if next(calls) == 6:  # 4 training batches + 1 evaluation batch: epoch 2 has begun
            seen_at_epoch_two.extend(printed)
        return real(self, outputs, batch)

    monkeypatch.setattr(ClassifyTask, "loss", loss)
    # stderr is not a terminal here: progress=None gives one-line reports, not a bar
    run = tunekit.finetune(
        task="classify",
        data=single_rows(40),
        model=tiny,
        epochs=2,
        eval_split=0.2,
        **{**FAST, "progress": None},
    )
    printed.extend(capsys.readouterr().err.splitlines())
    rows = [line for line in printed if line.startswith("epoch ")]
    assert [r.split()[1] for r in rows] == ["1/2", "2/2"]
    assert "accuracy" in rows[0] and f"step {run.history[0]['step']}" in rows[0]
    # the first epoch's row was out before the second epoch trained, not at the end
    assert any(line.startswith("epoch 1/2") for line in seen_at_epoch_two)
    assert not any(line.startswith("epoch 2/2") for line in seen_at_epoch_two)
    steps = [line for line in printed if line.startswith("training: step ")]
    assert steps and steps[-1].startswith("training: step 8/8 (100%)")


def test_progress_only_on_the_main_process_and_off_when_asked():
    import io

    from tunekit.progress import progress_mode

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert progress_mode(None, main=False, stream=Terminal()) == "off"  # rank > 0
    assert progress_mode(True, main=False) == "off"
    assert progress_mode(False, main=True, stream=Terminal()) == "off"
    assert progress_mode(None, main=True, stream=Terminal()) == "bar"
    assert progress_mode(None, main=True, stream=io.StringIO()) == "lines"


def test_resume_of_an_adalora_run_is_refused_not_continued_inexactly(tiny, tmp_path):
    """AdaLoRA's rank allocator is not in checkpoints: resuming mid-run would silently
    differ from the uninterrupted run, so it is refused, naming the reason and what resumes
    exactly. A finished run (nothing left to train) still resumes."""
    import shutil

    rows = single_rows(24)
    opts = dict(
        model=tiny,
        strategy="peft",
        method="adalora",
        epochs=2,
        checkpoint_steps=2,
        keep_checkpoints_after_training=True,
        **FAST,
    )
    out = tmp_path / "adalora"
    tunekit.finetune(task="classify", data=rows, output_dir=out, **opts)
    # the whole run is checkpointed: resuming it has nothing left to train, and works
    tunekit.finetune(task="classify", data=rows, output_dir=out, resume=True, **opts)
    # as after a crash mid-run: no bundle, the last checkpoint is not the final step
    shutil.rmtree(out / "bundle")
    checkpoints = sorted((out / "checkpoints").iterdir())
    assert len(checkpoints) >= 2, checkpoints
    for later in checkpoints[1:]:
        shutil.rmtree(later)
    with pytest.raises(ConfigError, match=r"adalora.*rank allocator.*without resume=True"):
        tunekit.finetune(task="classify", data=rows, output_dir=out, resume=True, **opts)
