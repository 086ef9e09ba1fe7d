"""Assembling a run: the one place where a task, a strategy and a backbone become a model
and a :class:`~tunekit.run.Run`, for ``finetune()`` (:func:`build_run`), ``tunekit.load()``
(:func:`load_bundle`) and unsupervised tasks that fit something else than a head
(the topics plugin, through ``tunekit.plugin``)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from .bundle import _read_json, find_bundle, verify_bundle
from .config import TrainingConfig, build_config
from .errors import BundleError, ConfigError, TunekitError
from .history import History
from .models import Backbone, load_pretrained, resolve_model
from .plugins import get_state
from .run import Run
from .strategy import Strategy
from .task import Task
from .taskmodel import TaskModel
from .trainer import Trainer, _seed_everything, resolve_precision


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


def load_backbone(model: str | os.PathLike | None = None) -> Backbone:
    """Load the encoder and tokenizer for *model* (alias, local directory, hub id or a tunekit
    bundle, whose encoder is used with its head dropped).

    Example::

        backbone = load_backbone("minilm")        # embedded, offline
        backbone = load_backbone("./my-bert")     # a save_pretrained() directory
        backbone = load_backbone("out/mlm")       # a tunekit bundle: its encoder, head dropped
    """
    name, target = resolve_model(model)
    bundle = find_bundle(target) if Path(target).is_dir() else None
    if bundle is not None:
        return bundle_backbone(bundle, name=name)
    return load_pretrained(model)


def bundle_backbone(path: str | os.PathLike, *, name: str | None = None) -> Backbone:
    """The encoder of a saved bundle (adapters merged in) with its tokenizer, as a
    :class:`Backbone`, so that a bundle can be the ``model=`` of another task: e.g. a
    ``fill-mask`` domain-adapted encoder fine-tuned for ``classify``. The bundle's head is
    dropped.

    Example::

        tunekit.finetune(task="classify", model="out/mlm-adapted", data="reviews.csv")
    """
    run = load_bundle(path, device="cpu")
    encoder = run.strategy.merged_model(run.model).encoder
    encoder.eval()
    return Backbone(
        name=name or str(path), source=str(path), model=encoder, tokenizer=run.tokenizer
    )


# bundles this thread is loading: a base model that leads back to one of them is a cycle
_LOADING = threading.local()


def load_bundle(
    path: str | os.PathLike,
    *,
    device: str | None = None,
    verify_key: bytes | str | None = None,
) -> Run:
    """Load and verify a bundle written by :func:`save_bundle`.

    Everything that can be wrong with a bundle, whether damaged or edited and re-hashed,
    is a :class:`BundleError` naming the file and key; no code from the bundle runs.
    """
    root = Path(path)
    key = os.path.realpath(root)
    loading: set[str] = _LOADING.__dict__.setdefault("paths", set())
    if key in loading:
        raise BundleError(
            f"bundle {root} names itself (directly or through other bundles) as its base model in "
            f"tunekit.json key 'backbone'; a bundle re-attaches to a different base: save it again "
            f"with run.save(), or with merged=True for a standalone bundle"
        )
    loading.add(key)
    try:
        return _load_bundle(root, device=device, verify_key=verify_key)
    finally:
        loading.discard(key)


def _load_bundle(root: Path, *, device: str | None, verify_key: bytes | str | None) -> Run:
    import torch
    from safetensors import SafetensorError, safe_open
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    meta = verify_bundle(root, verify_key=verify_key)
    state = get_state()
    try:
        task_cls = state.tasks.get(meta["task"]["name"])
        strategy_cls = state.strategies.get(meta["strategy"]["name"])
    except TunekitError as exc:
        raise BundleError(
            f"bundle {root} needs a plugin that is not installed: {exc} Install the plugin that "
            f"provides it (`tunekit plugins` lists what is installed)."
        ) from exc

    def damaged(where: str, exc: BaseException) -> BundleError:
        return BundleError(
            f"bundle {root}: {where} cannot be used ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); the bundle is damaged or was "
            f"edited: save it again with run.save()"
        )

    broken = (TunekitError, ValueError, TypeError, KeyError, IndexError, AttributeError)
    try:
        task = task_cls(
            build_config(
                task_cls.Config, meta["task"].get("config", {}), owner=f"task {task_cls.name!r}"
            )
        )
        task.load_state(meta["task"].get("state") or {})
    except broken as exc:
        raise damaged(f"tunekit.json key 'task' (task {task_cls.name!r})", exc) from exc
    try:
        strategy = strategy_cls(
            build_config(
                strategy_cls.Config,
                meta["strategy"].get("config", {}),
                owner=f"strategy {strategy_cls.name!r}",
            )
        )
    except broken as exc:
        raise damaged(f"tunekit.json key 'strategy' ({strategy_cls.name!r})", exc) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", trust_remote_code=False)
    except (OSError, RecursionError, *broken) as exc:
        raise damaged("tokenizer/", exc) from exc
    identity = meta["backbone"]
    if meta["strategy"]["stores_encoder"]:
        try:
            config = AutoConfig.from_pretrained(root, trust_remote_code=False)
            encoder = AutoModel.from_config(config, trust_remote_code=False)
        except (OSError, RuntimeError, *broken) as exc:
            raise damaged("config.json", exc) from exc
        backbone = Backbone(
            name=identity.get("name") or "", source=str(root), model=encoder, tokenizer=tokenizer
        )
    else:
        try:
            backbone = load_backbone(identity.get("name") or identity.get("source"))
        except TunekitError as exc:
            raise BundleError(
                f"bundle {root} re-attaches to base model {identity.get('name')!r}, which cannot be loaded: {exc}"
            ) from exc
        if identity.get("weights_sha256") and backbone.weights_sha256 != identity["weights_sha256"]:
            raise BundleError(
                f"bundle {root} was trained on base model {identity.get('name')!r} with weights sha256 "
                f"{str(identity['weights_sha256'])[:12]}…, but {backbone.source} has {backbone.weights_sha256[:12]}…; "
                f"load it where the same base model is available, or save it with a strategy that stores the encoder"
            )
        backbone = Backbone(
            name=backbone.name, source=backbone.source, model=backbone.model, tokenizer=tokenizer
        )
    try:
        model = assemble_model(task, strategy, backbone)  # as build_run assembled it
    except (RuntimeError, *broken) as exc:
        raise damaged("tunekit.json (task and strategy options) with config.json", exc) from exc
    try:
        with safe_open(str(root / "model.safetensors"), framework="pt") as fh:
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(
            f"bundle {root}: model.safetensors is not a readable safetensors file ({exc}); it is "
            f"truncated or in another format: save the bundle again with run.save()"
        ) from exc
    expected = model.state_dict()
    for name, tensor in tensors.items():
        if name in expected and tuple(expected[name].shape) != tuple(tensor.shape):
            raise BundleError(
                f"bundle {root}: model.safetensors holds {name} with shape {tuple(tensor.shape)}, "
                f"but the model rebuilt from config.json and tunekit.json needs "
                f"{tuple(expected[name].shape)} (an edited hidden_size, label list or head option?); "
                f"save the bundle again with run.save()"
            )
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    allowed_missing = (
        set()
        if meta["strategy"]["stores_encoder"]
        else {k for k in model.state_dict() if k.startswith("encoder.")}
    )
    bad_missing = [k for k in missing if k not in allowed_missing]
    if unexpected or bad_missing:
        raise BundleError(
            f"bundle {root} does not fit the model rebuilt from it (missing {bad_missing[:3]}, unexpected "
            f"{list(unexpected)[:3]}); it was written by an incompatible tunekit or plugin version"
        )
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(target).eval()
    try:
        training = build_config(
            TrainingConfig, {**meta["training"], "resume": False}, owner="training"
        )
    except broken as exc:
        raise damaged("tunekit.json key 'training'", exc) from exc
    history_data = _read_json(root, "history.json")
    if not isinstance(history_data, dict):
        raise BundleError(
            f"bundle {root}: history.json must be an object with 'rows' and 'info'; save the bundle "
            f"again with run.save()"
        )
    try:
        history = History(history_data.get("rows"), info=history_data.get("info"))
    except broken as exc:
        raise damaged("history.json", exc) from exc
    precision = meta.get("precision", "fp32")
    if training.precision == "auto":
        # "auto" is a per-machine choice: a bundle trained in bf16 where that is native
        # predicts in fp32 on a machine where bf16 would be emulated (and slower)
        precision = resolve_precision("auto", target)
    if precision == "fp16" and target.type == "cpu":
        precision = "fp32"
    return new_run(
        task,
        strategy=strategy,
        model=model,
        tokenizer=tokenizer,
        training=training,
        backbone=identity,
        history=history,
        metrics=meta.get("metrics"),
        precision=precision,
    )
