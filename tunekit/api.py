"""The public entry points: ``finetune()``, ``load()`` and the registry lookups."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .atomic import check_writable_directory
from .config import TrainingConfig, build_config, split_options
from .data import split_records
from .errors import ConfigError
from .log import set_verbosity
from .models import Backbone, load_backbone
from .plugins import ModelAlias, get_state
from .run import Run
from .strategy import Strategy
from .task import Task
from .taskmodel import TaskModel
from .trainer import Trainer, _seed_everything

logger = logging.getLogger("tunekit")


def get_task(name: str) -> type[Task]:
    """The task class registered as *name* (or an alias); unknown names list close matches."""
    return get_state().tasks.get(name)


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered as *name* (or an alias)."""
    return get_state().strategies.get(name)


def list_tasks() -> list[str]:
    """Names of every registered task."""
    return get_state().tasks.names()


def list_strategies() -> list[str]:
    """Names of every registered strategy."""
    return get_state().strategies.names()


def list_models() -> dict[str, ModelAlias]:
    """Registered model aliases → :class:`~tunekit.plugins.ModelAlias` (target and info)."""
    models = get_state().models
    return {name: models.get(name) for name in models.names()}


def finetune(
    task: str,
    *,
    data: Any = None,
    model: str | os.PathLike | None = None,
    eval_data: Any = None,
    strategy: str = "full",
    **options: Any,
) -> Run:
    """Fine-tune *model* for *task* on *data* and return the trained :class:`Run`.

    *options* are training options (``epochs``, ``batch_size``, ``learning_rate``,
    ``max_length``, ``precision``, ``output_dir``... see :class:`TrainingConfig`), the
    task's options (``text_column``, ``problem``...) and the strategy's options
    (``r``, ``k``...). A misspelled option is an error with close matches.

    Without *eval_data*, a seeded stratified ``eval_split`` (default 0.1) is held out;
    ``eval_split=0`` trains without evaluation. With ``output_dir``, checkpoints go to
    ``output_dir/checkpoints`` (``resume=True`` continues from the latest) and the final
    bundle to ``output_dir/bundle``.

    Example::

        run = tunekit.finetune(task="classify", data="reviews.csv", epochs=3)
        print(run.history)
    """
    state = get_state()
    task_cls = state.tasks.get(task)
    strategy_cls = state.strategies.get(strategy)
    training_opts, task_opts, strategy_opts = split_options(
        options, task_cls=task_cls, strategy_cls=strategy_cls
    )
    training = build_config(TrainingConfig, training_opts, owner="training")
    set_verbosity(training.verbose)
    task_obj = task_cls(build_config(task_cls.Config, task_opts, owner=f"task {task_cls.name!r}"))
    strategy_obj = strategy_cls(
        build_config(strategy_cls.Config, strategy_opts, owner=f"strategy {strategy_cls.name!r}")
    )
    if training.output_dir:
        check_writable_directory(training.output_dir)  # before hours of training, not after
    if not task_cls.supervised:
        return task_obj.fit(
            model=model, data=data, eval_data=eval_data, strategy=strategy_obj, training=training
        )

    train_records = task_obj.read(data, name="data")
    if eval_data is not None:
        eval_records = task_obj.read(eval_data, name="eval_data")
    elif training.eval_split > 0:
        train_records, eval_records = split_records(
            train_records,
            fraction=training.eval_split,
            seed=training.seed,
            key=task_obj.stratify_key,
        )
    else:
        eval_records = []
    task_obj.setup(train_records)
    backbone = load_backbone(model)
    _check_max_length(training, backbone)
    trainer, run = build_run(task_obj, strategy_obj, backbone, training)
    train_features = task_obj.encode(
        train_records, backbone.tokenizer, max_length=training.max_length, with_labels=True
    )
    eval_features = (
        task_obj.encode(
            eval_records, backbone.tokenizer, max_length=training.max_length, with_labels=True
        )
        if eval_records
        else []
    )
    history = trainer.fit(train_features, eval_features, eval_records)
    run.model = trainer.model
    run.history = history
    if eval_features:
        run.metrics, _ = trainer.evaluate(eval_features, eval_records)
    if training.output_dir:
        run.save(Path(training.output_dir) / "bundle")
    return run


def build_run(
    task: Task, strategy: Strategy, backbone: Backbone, training: TrainingConfig
) -> tuple[Trainer, Run]:
    """Assemble the model for (task, strategy, backbone) and a trainer for it."""
    identity = (
        backbone.identity()
        if not strategy.stores_encoder
        else {
            "name": backbone.name,
            "source": backbone.source,
            "model_type": getattr(backbone.config, "model_type", None),
        }
    )
    _seed_everything(training.seed)  # same seed → same head (and adapter) initialisation
    head = task.build_head(backbone)
    model = TaskModel(backbone.model, head)
    strategy.apply(model)
    trainer = Trainer(
        model=model, task=task, strategy=strategy, tokenizer=backbone.tokenizer, config=training
    )
    run_cls = getattr(task, "run_class", None) or Run  # the same Run subclass tunekit.load() gives
    run = run_cls(
        task=task,
        strategy=strategy,
        model=model,
        tokenizer=backbone.tokenizer,
        training=training,
        backbone=identity,
        precision=trainer.precision,
    )
    return trainer, run


def _check_max_length(training: TrainingConfig, backbone: Backbone) -> None:
    limit = getattr(backbone.config, "max_position_embeddings", None)
    if limit and training.max_length > limit:
        raise ConfigError(
            f"max_length={training.max_length} is over the limit of model {backbone.name!r} "
            f"({limit} positions); use max_length<={limit} (long texts: long_text='chunk' where the task has it)"
        )


def load(path: str | os.PathLike, *, device: str | None = None) -> Run:
    """Load a bundle written by ``run.save()``, verifying every file against its manifest.

    Example::

        model = tunekit.load("out/sentiment")
        model.predict("a dull, lifeless mess")
    """
    from .bundle import load_bundle

    return load_bundle(path, device=device)
