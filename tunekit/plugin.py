"""The plugin author's module: everything needed to write a task, head or strategy.

A plugin imports three modules only: ``tunekit`` (the user API), ``tunekit.plugin`` (this
one) and ``tunekit.testing`` (the contract test kit). The rest of ``tunekit`` is private
and may change between releases; the first-party plugins obey the same rule, checked by
``nox -s lint``, so every name here is one a real plugin needs. ``docs/plugins.md``
documents each of them.

Example::

    import attrs
    import tunekit
    from tunekit.plugin import MLPHead, Task, find_column, one_of, read_table

    @attrs.frozen(kw_only=True)
    class MyConfig:
        pooling: str = attrs.field(default="mean", validator=one_of("mean", "cls"))

    class MyTask(Task):
        name, Config = "my-task", MyConfig
        ...

    @tunekit.hookimpl
    def tunekit_register_tasks(register):
        register(MyTask)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .assembly import backbone_identity, build_run, check_max_length, load_backbone
from .bundle import find_bundle, verify_bundle
from .config import TrainingConfig, build_config, fraction, non_negative, one_of, positive
from .data import (
    LABEL_COLUMNS,
    TEXT_COLUMNS,
    find_column,
    in_memory_rows,
    is_missing,
    is_path,
    read_columns,
    read_table,
    text_inputs,
)
from .errors import (
    ConfigError,
    DataError,
    ExportError,
    UnknownNameError,
    close_matches_hint,
)
from .export import (
    HFExport,
    encoder_model,
    feature_extraction,
    sequence_classification,
    sequence_classification_check,
    token_classification,
    token_classification_check,
)
from .head import ACTIVATIONS, HEAD_LEVELS, Head, LinearHead, MLPHead, pool
from .history import History
from .hookspecs import hookimpl
from .inference import autocast_for, compute_outputs, map_batches
from .labels import LabelSchema
from .language import default_model_for
from .metrics import classification_metrics, multilabel_metrics, regression_metrics
from .models import Backbone
from .plugins import get_head, get_state
from .run import Run, embedding_similarity
from .strategy import Strategy
from .task import Feature, Record, Task, default_collate, pad_sequences
from .taskmodel import TaskModel
from .trainer import resolve_precision

__all__ = [
    # interfaces and registration
    "Task",
    "Head",
    "HEAD_LEVELS",
    "Strategy",
    "hookimpl",
    "get_head",
    "get_task",
    "new_strategy",
    # types a task works with
    "Record",
    "Feature",
    "LabelSchema",
    "Backbone",
    "TaskModel",
    "TrainingConfig",
    "History",
    "Run",
    "default_collate",
    "pad_sequences",
    # heads
    "MLPHead",
    "LinearHead",
    "ACTIVATIONS",
    "pool",
    # data readers and column helpers
    "read_table",
    "find_column",
    "is_missing",
    "is_path",
    "text_inputs",
    "in_memory_rows",
    "read_columns",
    "TEXT_COLUMNS",
    "LABEL_COLUMNS",
    # option validators
    "positive",
    "non_negative",
    "fraction",
    "one_of",
    # errors
    "ConfigError",
    "DataError",
    "ExportError",
    "UnknownNameError",
    "close_matches_hint",
    # metrics
    "classification_metrics",
    "multilabel_metrics",
    "regression_metrics",
    # export to transformers
    "HFExport",
    "encoder_model",
    "sequence_classification",
    "sequence_classification_check",
    "token_classification",
    "token_classification_check",
    "feature_extraction",
    # inference, and building runs (unsupervised tasks, encoder adaptation)
    "autocast_for",
    "embedding_similarity",
    "compute_outputs",
    "map_batches",
    "predict_records",
    "load_backbone",
    "default_model_for",
    "check_max_length",
    "backbone_identity",
    "build_run",
    "resolve_precision",
    "read_bundle",
]


def get_task(name: str) -> type[Task]:
    """The task class registered as *name* (or an alias), e.g. to run another plugin's task
    inside yours (the topics plugin adapts its encoder with ``fill-mask``).

    Example::

        mlm = get_task("fill-mask")()
    """
    return get_state().tasks.get(name)


def new_strategy(name: str, **options: Any) -> Strategy:
    """An instance of the strategy registered as *name*, its options checked like
    ``finetune()``'s (a bad one is a :class:`ConfigError`).

    Example::

        frozen = new_strategy("frozen", cache_features=False)
    """
    cls = get_state().strategies.get(name)
    return cls(build_config(cls.Config, options, owner=f"strategy {cls.name!r}"))


def predict_records(
    run: Run,
    records: Sequence[Record],
    *,
    batch_size: int | None = None,
    with_labels: bool = False,
    **options: Any,
) -> tuple[list[Any], float | None]:
    """Predictions of *run* for already-read *records* (a chunk at a time, like
    ``run.predict``) and, with ``with_labels=True``, the mean loss; *options* go to
    :meth:`Task.decode`. For ``Run`` subclasses that work on records (``QARun.tune_threshold``).

    Example::

        predictions, _ = predict_records(self, self.task.read(data, name="data"))
    """
    return run._decode(records, with_labels=with_labels, batch_size=batch_size, options=options)


def read_bundle(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The task metadata (``tunekit.json``) and weights of the bundle at *path*, after
    verifying every file against its manifest (a ``tunekit.BundleError`` if altered or
    partial); ``None`` when *path* holds no bundle. For a head that continues from a
    bundle's head (fill-mask's continued pretraining).

    Example::

        found = read_bundle("out/mlm")
        if found and found[0]["task"]["name"] == "fill-mask":
            meta, tensors = found
    """
    from safetensors.torch import load_file

    root = find_bundle(path) if Path(path).is_dir() else None
    if root is None:
        return None
    meta = verify_bundle(root)
    return meta, load_file(str(root / "model.safetensors"))
