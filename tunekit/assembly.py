"""Assembling a run: the one place where a task, a strategy and a backbone become a model
and a :class:`~tunekit.run.Run`, for ``finetune()`` (:func:`build_run`), ``tunekit.load()``
(``bundle.load_bundle``) and unsupervised tasks that fit something else than a head
(the topics plugin, through ``tunekit.plugin``)."""

from __future__ import annotations

from typing import Any

from .config import TrainingConfig
from .errors import ConfigError
from .models import Backbone
from .run import Run
from .strategy import Strategy
from .task import Task
from .taskmodel import TaskModel
from .trainer import Trainer, _seed_everything


def backbone_identity(backbone: Backbone, strategy: Strategy, **extra: Any) -> dict[str, Any]:
    """What a bundle records about the encoder: enough to find it again and check its
    weights (``backbone.identity()``) when the strategy saves only what it trained; its
    name, source and model type when the strategy stores the whole encoder. *extra* keys
    are added (the topics plugin records ``adapted=``).

    Example::

        run_backbone = backbone_identity(backbone, strategy, adapted="simcse")
    """
    if not strategy.stores_encoder:
        return {**backbone.identity(), **extra}
    return {
        "name": backbone.name,
        "source": backbone.source,
        "model_type": getattr(backbone.config, "model_type", None),
        **extra,
    }


def assemble_model(task: Task, strategy: Strategy, backbone: Backbone) -> TaskModel:
    """The task's head on the backbone's encoder, wrapped by the strategy (frozen layers,
    adapters, a layer mix...): the same model at training and at load.

    Example::

        model = assemble_model(task, strategy, backbone)
    """
    model = TaskModel(backbone.model, task.build_head(backbone))
    strategy.apply(model)
    return model


def new_run(task: Task, **parts: Any) -> Run:
    """The task's :class:`Run` class (``Task.run_class``, else ``Run``) built from *parts*
    (``strategy``, ``model``, ``tokenizer``, ``training``, ``backbone``...): the same class
    whether the run was just trained or loaded."""
    run_cls = getattr(task, "run_class", None) or Run
    return run_cls(task=task, **parts)


def build_run(
    task: Task, strategy: Strategy, backbone: Backbone, training: TrainingConfig
) -> tuple[Trainer, Run]:
    """Assemble the model for (task, strategy, backbone), a trainer for it and its run.

    Example::

        trainer, run = build_run(task, strategy, backbone, TrainingConfig(eval_split=0))
        run.history = trainer.fit(task.encode(records, backbone.tokenizer, max_length=128,
                                              with_labels=True), [], [])
    """
    identity = backbone_identity(backbone, strategy)  # before adapters are attached to it
    _seed_everything(training.seed)  # same seed → same head (and adapter) initialisation
    model = assemble_model(task, strategy, backbone)
    trainer = Trainer(
        model=model, task=task, strategy=strategy, tokenizer=backbone.tokenizer, config=training
    )
    run = new_run(
        task,
        strategy=strategy,
        model=model,
        tokenizer=backbone.tokenizer,
        training=training,
        backbone=identity,
        precision=trainer.precision,
    )
    return trainer, run


def check_max_length(training: TrainingConfig, backbone: Backbone) -> None:
    """Refuse a ``max_length`` the backbone cannot take (over its positions) or that leaves
    no room for text after the special tokens, before any training.

    Example::

        check_max_length(training, load_backbone(model))
    """
    specials = _special_token_count(backbone.tokenizer)
    if specials is not None and training.max_length <= specials:
        raise ConfigError(
            f"max_length={training.max_length} leaves no room for text: the tokenizer of model "
            f"{backbone.name!r} adds {specials} special tokens (e.g. [CLS] and [SEP]) to a pair "
            f"of texts; use max_length>={specials + 1} (typically 128 or more)"
        )
    limit = getattr(backbone.config, "max_position_embeddings", None)
    if limit and training.max_length > limit:
        raise ConfigError(
            f"max_length={training.max_length} is over the limit of model {backbone.name!r} "
            f"({limit} positions); use max_length<={limit} (long texts: long_text='chunk' where the task has it)"
        )


def _special_token_count(tokenizer: Any) -> int | None:
    """Special tokens the tokenizer adds to a text pair (the most any task adds)."""
    count = getattr(tokenizer, "num_special_tokens_to_add", None)
    if count is None:
        return None
    try:
        return int(count(pair=True))
    except Exception:  # a tokenizer that cannot tell: nothing to check against
        return None
