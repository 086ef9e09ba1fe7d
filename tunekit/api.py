"""The public entry points: ``finetune()``, ``load()`` and the registry lookups."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from .assembly import build_run, check_max_length, load_backbone
from .atomic import check_save_target, check_writable_directory
from .config import TrainingConfig, build_config, split_options
from .data import split_records
from .errors import ConfigError
from .language import default_model_for
from .log import quiet_libraries, set_verbosity
from .plugins import ModelAlias, get_state
from .run import Run
from .strategy import Strategy
from .task import Task

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


@quiet_libraries()
def finetune(
    task: str,
    *,
    data: Any = None,
    model: str | os.PathLike | None = None,
    eval_data: Any = None,
    strategy: str = "full",
    export: str | os.PathLike | None = None,
    **options: Any,
) -> Run:
    """Fine-tune *model* for *task* on *data* and return the trained :class:`Run`.

    *options* are training options (``epochs``, ``batch_size``, ``learning_rate``,
    ``max_length``, ``precision``, ``output_dir``... see :class:`TrainingConfig`), the
    task's options (``text_column``, ``problem``...) and the strategy's options
    (``r``, ``k``...). A misspelled option is an error with close matches.

    Without *eval_data*, a seeded stratified ``eval_split`` (default 0.1) is held out;
    ``eval_split=0`` trains without evaluation; a 🤗 ``DatasetDict`` given as *data*
    trains on its ``train`` split and evaluates on its ``validation`` split when it has one.
    With ``output_dir``, checkpoints go to ``output_dir/checkpoints`` (``resume=True``
    continues from the latest) and the final bundle to ``output_dir/bundle``; once that
    bundle is saved the checkpoints are deleted (they only serve resuming an unfinished
    run; ``keep_checkpoints_after_training=True`` keeps them), and ``resume=True`` on a
    finished run returns its bundle.

    *export*: a directory to export the trained model to as a 🤗 transformers model
    (``run.export(export)``); whether the run's head can be exported is checked before
    training, so an unexportable head fails in seconds with the options that would export.

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
    if training.checkpoint_steps and not training.output_dir:
        raise ConfigError(
            f"checkpoint_steps={training.checkpoint_steps} needs output_dir=...: checkpoints are "
            f"written to output_dir/checkpoints; pass output_dir, or drop checkpoint_steps"
        )
    task_obj = task_cls(build_config(task_cls.Config, task_opts, owner=f"task {task_cls.name!r}"))
    strategy_obj = strategy_cls(
        build_config(strategy_cls.Config, strategy_opts, owner=f"strategy {strategy_cls.name!r}")
    )
    if training.output_dir:
        check_writable_directory(training.output_dir)  # before hours of training, not after
        check_save_target(Path(training.output_dir) / "bundle", option="output_dir")
        finished = _finished_run(training, task_cls.name, strategy_cls.name)
        if finished is not None:
            return finished
    if export is not None:
        check_writable_directory(export, option="export")
    if eval_data is None:
        eval_data = _validation_split(data)
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
    if training.early_stopping_patience and not eval_records:
        raise ConfigError(
            f"early_stopping_patience={training.early_stopping_patience} needs evaluation data "
            f"(it stops when the eval metric stops improving), but this run has none "
            f"(eval_split={training.eval_split}); pass eval_data=... or eval_split>0, or drop "
            f"early_stopping_patience"
        )
    task_obj.setup(train_records)
    if model is None:  # the embedded default, or the multilingual one for text it cannot read
        model = default_model_for(train_records)
    backbone = load_backbone(model)
    check_max_length(training, backbone)
    trainer, run = build_run(task_obj, strategy_obj, backbone, training)
    if export is not None:
        _check_exportable(run)
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
    run.eval_records = eval_records  # held-out records for run.export(format="onnx")'s gates
    if eval_features:
        run.metrics, _ = trainer.evaluate(eval_features, eval_records)
    if training.output_dir:
        run.bundle_path = run.save(Path(training.output_dir) / "bundle")
        if not training.keep_checkpoints_after_training:
            _delete_checkpoints(Path(training.output_dir))
    if export is not None:
        run.export(export)
    return run


def _validation_split(data: Any) -> Any:
    """A ``DatasetDict``'s ``validation`` split (its evaluation data), else ``None``; its
    other splits besides ``train`` are named in a warning, never silently dropped."""
    from .data import _is_dataset_dict

    if not _is_dataset_dict(data):
        return None
    unused = [name for name in data if name not in ("train", "validation")]
    if unused:
        logger.warning(
            "data is a DatasetDict: training on its 'train' split%s; split(s) %s are not used "
            "(pass eval_data=data[%r] to evaluate on one, or run.evaluate(data[%r]) after training)",
            ", evaluating on 'validation'" if "validation" in data else "",
            ", ".join(map(repr, unused)),
            unused[0],
            unused[0],
        )
    return data.get("validation")


def _check_exportable(run: Run) -> None:
    """Refuse, before training, a run whose head cannot be exported to transformers."""
    from .errors import ExportError
    from .export import hf_export

    try:
        hf_export(run)
    except ExportError as exc:
        raise ExportError(
            f"export= was asked for, but this run cannot be exported to transformers (checked before "
            f"training): {exc}"
        ) from None


def _finished_run(training: TrainingConfig, task: str, strategy: str) -> Run | None:
    """With ``resume=True``: the finished run in ``output_dir`` (its bundle, saved when its
    checkpoints were deleted) when there is no checkpoint left to resume from, else ``None``.
    A bundle trained with other options is refused, naming them."""
    from .bundle import find_bundle
    from .config import config_to_dict
    from .trainer import CHECKPOINTS_DIR, latest_checkpoint

    root = Path(training.output_dir)
    if not training.resume or latest_checkpoint(root / CHECKPOINTS_DIR) is not None:
        return None
    bundle = find_bundle(root)
    if bundle is None or bundle == root:
        return None
    run = load(bundle)
    from .checkpoint import RESUME_MAY_CHANGE  # the options a resumed run may change

    ours, theirs = config_to_dict(training), config_to_dict(run.training)
    differing = [
        k for k in ours if k not in RESUME_MAY_CHANGE and k in theirs and ours[k] != theirs[k]
    ]
    if run.task.name != task or run.strategy.name != strategy:
        differing[:0] = ["task/strategy"]
    if differing:
        raise ConfigError(
            f"resume=True: the run in {root} finished (its bundle is {bundle}, its checkpoints were "
            f"deleted) with other options: {', '.join(differing)}. Resume with the same options, or "
            f"train into another output_dir"
        )
    logger.info("resume=True: the run in %s finished; returning its bundle %s", root, bundle)
    run.bundle_path = str(bundle)
    return run


def _delete_checkpoints(output_dir: Path) -> None:
    """Delete the checkpoints the trainer wrote under ``output_dir/checkpoints`` (only those:
    ``checkpoint-<step>`` directories and half-written ``.checkpoint-*.partial`` ones)."""
    import re
    import shutil

    from .bundle import _is_main_process
    from .trainer import CHECKPOINTS_DIR

    root = output_dir / CHECKPOINTS_DIR
    if not root.is_dir() or not _is_main_process():
        return
    for path in root.iterdir():
        if path.is_dir() and re.fullmatch(r"\.?checkpoint-\d+(\..*\.partial)?", path.name):
            shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.rmdir()  # only when nothing else is in it


@quiet_libraries()
def load(
    path: str | os.PathLike,
    *,
    device: str | None = None,
    backend: str = "torch",
    verify_key: bytes | str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    spin: bool = False,
) -> Run:
    """Load a bundle written by ``run.save()``, verifying every file against its manifest.

    *path* may also be an ONNX export (``run.export(dir, format="onnx")``), served through
    onnxruntime (:class:`tunekit.onnx_run.OnnxRun`). ``backend="onnx"`` on a bundle
    exports it to ONNX on the fly (parity-checked on a probe batch) and serves that.

    *path* may also be a ``finetune(output_dir=...)`` directory (CLI ``--output``): its
    ``bundle/`` is loaded.

    Nothing in a bundle runs: Python files, pickles, ``auto_map`` keys and model types
    transformers does not know are refused with a :class:`~tunekit.errors.BundleError`.
    With *verify_key* (bytes or text), only a bundle saved with ``run.save(sign_key=...)``
    under the same key loads.

    *workers*, *threads*, *spin* set how an ONNX export serves
    (:func:`tunekit.onnx_run.load_onnx`: by default batches of 8 side by side, one
    single-threaded onnxruntime run per CPU; ``workers=1`` for the lowest latency); they
    are refused for a torch bundle, which ``num_threads`` (training config) governs.

    Example::

        model = tunekit.load("out/sentiment")
        model.predict("a dull, lifeless mess")
        tunekit.load("out/sentiment", verify_key=open("team.key", "rb").read())
        tunekit.load("out/onnx", workers=1, spin=True)   # one request at a time, fast
    """
    from .assembly import load_bundle
    from .bundle import find_bundle
    from .onnx_runtime import is_onnx_export

    if backend not in ("torch", "onnx"):
        raise ConfigError(f"backend={backend!r} is not known; use 'torch' or 'onnx'")
    serving: dict[str, Any] = {"workers": workers, "threads": threads, "spin": spin}
    onnx = is_onnx_export(path)
    if not onnx and backend == "torch" and (workers, threads, spin) != (None, None, False):
        raise ConfigError(
            f"workers / threads / spin set how an ONNX export serves, and {path} is a torch bundle; "
            f"serve it with backend='onnx', or drop them (its torch threads: num_threads)"
        )
    if onnx:
        from .onnx_run import load_onnx

        if verify_key is not None:  # never skip a check the caller asked for
            from .errors import BundleError

            raise BundleError(
                f"{path} is an ONNX export, which is not signed, so verify_key cannot be checked; "
                f"load the signed bundle (backend='onnx' serves it through onnxruntime)"
            )
        return load_onnx(path, **serving)
    from .trainer import CHECKPOINTS_DIR

    root = Path(path).expanduser()
    if find_bundle(root) is None and (root / CHECKPOINTS_DIR).is_dir():
        from .errors import BundleError

        raise BundleError(
            f"{path} is a finetune output directory without a bundle: its training did not "
            f"finish (only {root / CHECKPOINTS_DIR} is there). Finish it with "
            f"finetune(..., output_dir={os.fspath(path)!r}, resume=True) (CLI: the same command "
            f"with --resume); the bundle is then {root / 'bundle'}"
        )
    run = load_bundle(find_bundle(path) or path, device=device, verify_key=verify_key)
    if backend == "onnx":
        return _onnx_of(run, **serving)
    return run


def _onnx_of(run: Run, **serving: Any) -> Run:
    """*run* exported to ONNX in a temporary directory and served from there (*serving*:
    :func:`tunekit.onnx_run.load_onnx`'s options)."""
    import tempfile

    from .onnx_run import load_onnx

    with tempfile.TemporaryDirectory(prefix="tunekit-onnx-") as tmp:
        return load_onnx(run.export(Path(tmp) / "onnx", format="onnx"), **serving)
