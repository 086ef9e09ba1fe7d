"""Checkpoints: what a training run writes to continue after a crash, and the check that a
resumed run is the same run.

A checkpoint is ``output_dir/checkpoints/checkpoint-<global step>/`` holding what 🤗
accelerate's ``Accelerator.save_state`` writes (model weights as safetensors, optimizer,
learning-rate scheduler, and the random states of every process: Python, NumPy, torch CPU
and CUDA on every device), plus tunekit's ``state.json`` (the loop position: epoch, batch,
step; the history; early-stopping state; the run's fingerprint) and ``best.safetensors``
(the trainable weights of the best evaluation so far). It is written into a hidden
``.checkpoint-<step>.partial`` sibling and renamed into place once complete, so a killed
process never leaves a half-written checkpoint that a resume would pick up.

The fingerprint (:func:`run_fingerprint`) names everything that shapes the result; a
resume whose fingerprint differs is refused, listing each field ``old → new``. The options
in :data:`RESUME_MAY_CHANGE` may differ on resume: they change how a run is watched or
stored, not what it computes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from .config import TrainingConfig, config_to_dict
from .errors import CheckpointError, ResumeMismatchError

logger = logging.getLogger("tunekit")

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.json"
BEST_FILE = "best.safetensors"
#: version of the checkpoint layout; checkpoints of another one are refused
FORMAT = 2

#: training options that may differ between a run and its resumption: how it is watched,
#: logged and stored, not what it computes
RESUME_MAY_CHANGE = frozenset(
    {
        "output_dir",
        "resume",
        "checkpoint_steps",
        "keep_checkpoints",
        "keep_checkpoints_after_training",
        "eval_batch_size",
        "logging_steps",
        "progress",
        "report_to",
        "logging_dir",
        "run_name",
        "verbose",
        "num_threads",
        "compile",
        "gradient_checkpointing",
    }
)
#: task/strategy options that only say where caches live
_LOCATION_OPTIONS = frozenset({"cache_dir"})


@attrs.define(kw_only=True)
class LoopState:
    """Where the training loop is; saved in every checkpoint.

    ``batch`` counts the batches of epoch ``epoch`` this process has consumed (the sampler
    position), ``global_step`` the optimizer updates, ``best`` / ``bad_evals`` / ``stopped``
    the early-stopping state, ``loss_sum`` / ``loss_count`` the running training loss of the
    current period.
    """

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    best: float | None = None
    bad_evals: int = 0
    stopped: bool = False
    loss_sum: float = 0.0
    loss_count: int = 0
    nan_skips: int = 0


@attrs.define(kw_only=True)
class Restored:
    """What :func:`restore_checkpoint` read besides the states accelerate put back."""

    path: Path
    loop: LoopState
    history: list[dict[str, Any]]
    info: dict[str, Any]
    best_weights: dict[str, torch.Tensor] | None
    scaler: dict[str, Any] | None


def checkpoint_root(config: TrainingConfig) -> Path:
    """``output_dir/checkpoints``."""
    return Path(config.output_dir or ".") / CHECKPOINTS_DIR


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory under *root* (``output_dir/checkpoints``),
    or ``None``. Directories a killed process left half written (``.checkpoint-*.partial``)
    are never picked up.

    Example::

        latest_checkpoint("out/checkpoints")   # Path('out/checkpoints/checkpoint-00000120')
    """
    found = sorted(
        p
        for p in Path(root).glob("checkpoint-*")
        if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)
    )
    return found[-1] if found else None


# ---- fingerprint ------------------------------------------------------------------------


def run_fingerprint(
    *,
    task: Any,
    strategy: Any,
    model: Any,
    config: TrainingConfig,
    train_features: Sequence[Any],
    eval_features: Sequence[Any],
    processes: int,
) -> dict[str, Any]:
    """What makes two runs the same run: ``{field: value}`` with the task and its options,
    the strategy and its options, the label schema, the backbone (name, type and a hash of
    its pretrained weights), every training option that changes the result, the number of
    processes (it changes the batches), and hashes of the training and evaluation features.
    """
    fields: dict[str, Any] = {"task": task.name}
    for key, value in config_to_dict(task.config).items():
        if key not in _LOCATION_OPTIONS:
            fields[f"task.{key}"] = value
    fields["strategy"] = strategy.name
    for key, value in config_to_dict(strategy.config).items():
        if key not in _LOCATION_OPTIONS:
            fields[f"strategy.{key}"] = value
    schema = getattr(task, "schema", None)
    fields["labels"] = schema.to_dict() if schema is not None else None
    encoder = model.encoder
    encoder_config = getattr(encoder, "config", None)
    fields["backbone"] = getattr(encoder_config, "_name_or_path", None) or type(encoder).__name__
    fields["backbone.model_type"] = getattr(encoder_config, "model_type", None)
    fields["backbone.weights_sha256"] = _backbone_sha256(encoder)
    for key, value in config_to_dict(config).items():
        if key not in RESUME_MAY_CHANGE:
            fields[f"training.{key}"] = value
    fields["processes"] = processes
    fields["train_data_sha256"] = _features_sha256(train_features)
    fields["eval_data_sha256"] = _features_sha256(eval_features)
    # as JSON would give it back, so a fingerprint read from state.json compares equal
    return json.loads(json.dumps(fields, default=str))


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Raise :class:`ResumeMismatchError` listing each field that differs (``old → new``)."""
    differing = [
        f"{key}: {_short(saved.get(key, '(absent)'))} → {_short(current.get(key, '(absent)'))}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key, "(absent)") != current.get(key, "(absent)")
    ]
    if differing:
        raise ResumeMismatchError(
            f"resume=True: checkpoint {path} belongs to another run; these differ "
            f"(checkpoint → now):\n  "
            + "\n  ".join(differing)
            + f"\nResume with the run's original options and data, or start a new run with "
            f"resume=False in another output_dir (or delete {path.parent}). Options that may "
            f"change on resume: {', '.join(sorted(RESUME_MAY_CHANGE))}."
        )


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _backbone_sha256(encoder: torch.nn.Module) -> str:
    """A hash of the encoder's pretrained weights (adapter weights a peft strategy added are
    left out: they follow from the seed)."""
    adapters = tuple(getattr(encoder, "peft_config", {}) or {})
    digest = hashlib.sha256()
    for key, tensor in sorted(encoder.state_dict().items()):
        if any(f".{name}." in key or key.endswith(f".{name}") for name in adapters):
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _features_sha256(features: Sequence[Any]) -> str:
    digest = hashlib.sha256()
    for feature in features:
        digest.update(json.dumps(feature, sort_keys=True, default=_plain).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# ---- save / restore ---------------------------------------------------------------------


def save_checkpoint(
    accelerator: Any,
    root: Path,
    *,
    loop: LoopState,
    history: Any,
    best_weights: dict[str, torch.Tensor] | None,
    fingerprint: dict[str, Any],
    training: TrainingConfig,
    scaler: torch.amp.GradScaler | None = None,
) -> Path:
    """Write ``checkpoint-<global step>`` under *root* atomically; every process must call
    it (each saves its own random states). Keeps the newest ``keep_checkpoints``."""
    from safetensors.torch import save_file

    from .atomic import _fsync_tree

    name = f"checkpoint-{loop.global_step:08d}"
    target, partial = root / name, root / f".{name}.partial"
    main = accelerator.is_main_process
    accelerator.wait_for_everyone()
    if main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if main:
        if best_weights:
            save_file(
                {k: v.contiguous() for k, v in best_weights.items()}, str(partial / BEST_FILE)
            )
        state = {
            "format": FORMAT,
            "loop": attrs.asdict(loop),
            "history": history.rows,
            "info": history.info,
            "fingerprint": fingerprint,
            "training": config_to_dict(training),
            "scaler": scaler.state_dict() if scaler is not None else None,
        }
        (partial / STATE_FILE).write_text(json.dumps(state, default=str))
    accelerator.wait_for_everyone()
    if main:
        _fsync_tree(partial)
        if target.exists():  # the same step saved again (an evaluation changed the state)
            old = root / f".{name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(partial, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(partial, target)
        complete = sorted(p for p in root.glob("checkpoint-*") if p.is_dir())
        for stale in complete[: -training.keep_checkpoints]:
            shutil.rmtree(stale, ignore_errors=True)
        # what a killed process was writing: never read, cleared once a newer one is whole
        for stale in root.glob(".checkpoint-*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return target


def restore_checkpoint(accelerator: Any, path: Path, *, fingerprint: dict[str, Any]) -> Restored:
    """Check that *path* is a checkpoint of this very run (same fingerprint), then put back
    the model, optimizer, scheduler and every random state (accelerate's ``load_state``)
    and return the loop state, history and best weights.

    Raises :class:`ResumeMismatchError` for another run's checkpoint and
    :class:`CheckpointError` for an unreadable one, naming the file."""
    saved = _read_state(path)
    check_fingerprint(saved["fingerprint"], fingerprint, path)
    rng_file = path / f"random_states_{accelerator.process_index}.pkl"
    _check_loadable(rng_file, path)  # accelerate skips unreadable random states silently
    try:
        accelerator.load_state(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure: find and name the bad file
        culprit = _unreadable_file(path)
        if culprit is not None:
            raise CheckpointError(_unreadable(culprit[0], culprit[1], path)) from exc
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {exc}); delete {path} "
            f"to resume from the checkpoint before it, or start again with resume=False"
        ) from exc
    best = None
    if (path / BEST_FILE).exists():
        from safetensors.torch import load_file

        try:
            best = load_file(str(path / BEST_FILE))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(_unreadable(path / BEST_FILE, exc, path)) from exc
    try:
        loop = LoopState(**saved["loop"])
    except TypeError as exc:
        raise CheckpointError(_unreadable(path / STATE_FILE, exc, path)) from exc
    return Restored(
        path=path,
        loop=loop,
        history=saved["history"],
        info=saved["info"],
        best_weights=best,
        scaler=saved.get("scaler"),
    )


def _unreadable(file: Path, error: BaseException, checkpoint: Path) -> str:
    return (
        f"checkpoint file {file} is unreadable ({type(error).__name__}: "
        f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'}); the "
        f"checkpoint is damaged. Delete {checkpoint} to resume from the checkpoint before it, "
        f"or start again with resume=False"
    )


def _read_state(path: Path) -> dict[str, Any]:
    file = path / STATE_FILE
    try:
        saved = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(_unreadable(file, exc, path)) from exc
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        found = saved.get("format") if isinstance(saved, dict) else None
        raise CheckpointError(
            f"checkpoint {path} has format {found!r}, this tunekit reads format {FORMAT} "
            f"(written by another tunekit version, or {file} was edited); delete {path.parent} "
            f"and start again with resume=False"
        )
    missing = [k for k in ("loop", "history", "info", "fingerprint") if k not in saved]
    if missing:
        raise CheckpointError(_unreadable(file, KeyError(f"missing {', '.join(missing)}"), path))
    return saved


def _check_loadable(file: Path, checkpoint: Path) -> None:
    from accelerate.utils import load

    try:
        load(str(file), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(_unreadable(file, exc, checkpoint)) from exc


def _unreadable_file(path: Path) -> tuple[Path, BaseException] | None:
    """The first file of checkpoint *path* that cannot be read, with the error."""
    from accelerate.utils import load
    from safetensors.torch import load_file

    for file in sorted(path.iterdir()):
        if not file.is_file() or file.name in (STATE_FILE, BEST_FILE):
            continue
        try:
            if file.suffix == ".safetensors":
                load_file(str(file))
            else:
                load(str(file), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            return file, exc
    for name in ("model.safetensors", "optimizer.bin", "scheduler.bin"):
        if not (path / name).is_file():
            return path / name, FileNotFoundError("missing")
    return None
