"""Experiment trackers (``report_to=``, through accelerate) and the ``tunekit`` logger
(quiet by default, ``verbose=``)."""

from __future__ import annotations

import logging
import random

import pytest

import tunekit
from tunekit.config import TrainingConfig
from tunekit.errors import ConfigError
from tunekit.log import level_of, logger, set_verbosity
from tunekit.testing import make_tiny_model

GOOD = ["good", "great", "fine", "superb"]
BAD = ["bad", "awful", "poor", "dull"]
FAST = dict(max_length=16, batch_size=8, learning_rate=2e-3, warmup_ratio=0.0, progress=False)


def rows(n=32, seed=0):
    rng = random.Random(seed)
    return [
        {
            "text": " ".join(rng.sample(GOOD if i % 2 else BAD, 2) + ["film"]),
            "label": "pos" if i % 2 else "neg",
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert", [" ".join(GOOD + BAD)])


@pytest.fixture(autouse=True)
def _restore_logger():
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    for handler in logger.handlers[:]:
        if handler not in handlers:
            logger.removeHandler(handler)
    tunekit.log._handler = None


def read_scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = [p for p in logdir.rglob("events.out.tfevents.*") if p.parent == logdir]
    acc = EventAccumulator(str(events))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_event_file_holds_the_history(tiny, tmp_path):
    pytest.importorskip("tensorboard")
    run = tunekit.finetune(
        "classify",
        data=rows(),
        model=tiny,
        epochs=2,
        eval_split=0.25,
        report_to="tensorboard",
        output_dir=tmp_path / "out",
        run_name="sentiment",
        **FAST,
    )
    scalars = read_scalars(tmp_path / "out" / "logs" / "sentiment")
    history = run.history
    steps = history.column("step")
    # one point per history row, at the row's optimizer step, with the row's values
    assert [s for s, _ in scalars["eval/loss"]] == steps
    assert [v for _, v in scalars["eval/loss"]] == pytest.approx(history.column("eval_loss"))
    assert [v for _, v in scalars["eval/accuracy"]] == pytest.approx(history.column("accuracy"))
    assert [v for _, v in scalars["train/mean_loss"]] == pytest.approx(
        history.column("train_loss"), rel=1e-6
    )
    # and every optimizer step's loss and learning rate
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, steps[-1] + 1))
    assert [s for s, _ in scalars["train/learning_rate"]] == list(range(1, steps[-1] + 1))
    assert (tmp_path / "out" / "bundle" / "manifest.json").is_file()


def test_where_local_trackers_write(tmp_path):
    from tunekit.trainer import tracking_dir

    assert tracking_dir(TrainingConfig(logging_dir=tmp_path / "tb")) == str(tmp_path / "tb")
    assert tracking_dir(TrainingConfig(output_dir=tmp_path / "o")) == str(tmp_path / "o" / "logs")
    assert tracking_dir(TrainingConfig()) == "runs"


def test_report_to_is_validated_with_close_matches():
    assert TrainingConfig(report_to=None).report_to == ()
    assert TrainingConfig(report_to="none").report_to == ()
    assert TrainingConfig(report_to="tensorboard,mlflow").report_to == ("tensorboard", "mlflow")
    assert TrainingConfig(report_to=["tensorboard", "wandb"]).report_to == (
        "tensorboard",
        "wandb",
    )
    with pytest.raises(ConfigError, match=r"report_to='tensorbord'.*did you mean 'tensorboard'"):
        TrainingConfig(report_to="tensorbord")


def test_missing_tracker_library_is_a_clear_error(tiny, monkeypatch):
    import accelerate.tracking

    available = [t for t in accelerate.tracking.get_available_trackers() if str(t) != "mlflow"]
    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: available)
    with pytest.raises(
        ConfigError, match=r"report_to='mlflow' needs the mlflow package.*pip install mlflow"
    ):
        tunekit.finetune("classify", data=rows(), model=tiny, epochs=1, report_to="mlflow", **FAST)


def test_quiet_by_default_and_verbose_shows_progress(tiny, monkeypatch):
    monkeypatch.delenv("TUNEKIT_VERBOSITY", raising=False)
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)  # Python's default
    logger.setLevel(logging.NOTSET)  # as in a fresh process
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    tunekit.finetune("classify", data=rows(), model=tiny, epochs=1, eval_split=0, **FAST)
    assert not any("parameters trainable" in m for m in seen)
    tunekit.finetune(
        "classify", data=rows(), model=tiny, epochs=1, eval_split=0, verbose=True, **FAST
    )
    assert any("parameters trainable" in m for m in seen), seen
    assert logger.getEffectiveLevel() == logging.INFO


def test_verbosity_values_and_environment(monkeypatch):
    assert level_of(True) == logging.INFO and level_of(False) == logging.WARNING
    assert level_of("DEBUG") == logging.DEBUG
    monkeypatch.delenv("TUNEKIT_VERBOSITY", raising=False)
    assert level_of(None) is None
    monkeypatch.setenv("TUNEKIT_VERBOSITY", "info")
    assert level_of(None) == logging.INFO
    monkeypatch.setenv("TUNEKIT_VERBOSITY", "loud")
    with pytest.raises(ConfigError, match="TUNEKIT_VERBOSITY='loud'"):
        level_of(None)
    with pytest.raises(ConfigError, match="verbose='chatty'"):
        TrainingConfig(verbose="chatty")


def test_verbose_adds_a_stderr_handler_only_when_nothing_would_print(monkeypatch, capsys):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(logger, "handlers", [])
    set_verbosity("info")
    logger.info("hello from tunekit")
    assert "tunekit: INFO: hello from tunekit" in capsys.readouterr().err
    set_verbosity("info")  # no second handler
    assert len(logger.handlers) == 1
