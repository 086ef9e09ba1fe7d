"""Experiment trackers (``report_to``): which are installed, where they write, and the
names tunekit's values take there."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import TrainingConfig, config_to_dict
from .errors import ConfigError

#: the package each tracker needs (what to ``pip install``)
TRACKER_PACKAGES = {"comet_ml": "comet-ml"}


def check_trackers(names: Sequence[str]) -> tuple[str, ...]:
    """*names* (``report_to``), after checking that each tracker's library is installed.

    accelerate silently drops a tracker whose library is missing; tunekit refuses instead,
    so that a run meant to be tracked does not go unrecorded."""
    if not names:
        return ()
    from accelerate.tracking import get_available_trackers

    available = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in available:
            package = TRACKER_PACKAGES.get(name, name)
            raise ConfigError(
                f"report_to={name!r} needs the {package} package, which is not installed; "
                f"pip install {package}"
                + (" (or tunekit[tensorboard])" if name == "tensorboard" else "")
                + ", or drop it from report_to"
            )
    return tuple(names)


def tracking_dir(config: TrainingConfig) -> str:
    """Where local trackers (tensorboard...) write: ``logging_dir``, else
    ``output_dir/logs``, else ``./runs``."""
    if config.logging_dir:
        return config.logging_dir
    return str(Path(config.output_dir) / "logs") if config.output_dir else "runs"


def hparams(config: TrainingConfig, task: Any, strategy: Any) -> dict[str, Any]:
    """Run options as the flat scalars trackers accept (tensorboard's hparams)."""
    values: dict[str, Any] = {"task": task.name, "strategy": strategy.name}
    for prefix, options in (
        ("", config_to_dict(config)),
        ("task.", config_to_dict(task.config)),
        ("strategy.", config_to_dict(strategy.config)),
    ):
        for key, value in options.items():
            if not isinstance(value, (bool, int, float, str)):
                value = json.dumps(value, default=str)
            values[prefix + key] = value
    return values


def tracker_scalars(row: dict[str, Any]) -> dict[str, Any]:
    """A history row under trackers' names: ``train/epoch``, ``train/mean_loss``,
    ``train/seconds``, ``eval/loss`` and ``eval/<metric>``."""
    names = {"epoch": "train/epoch", "train_loss": "train/mean_loss", "seconds": "train/seconds"}
    return {
        names.get(key, "eval/" + key.removeprefix("eval_")): value
        for key, value in row.items()
        if key != "step"
    }
