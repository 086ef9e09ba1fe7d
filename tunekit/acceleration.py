"""The accelerate side of training: the device, the precision and the ``Accelerator``.

Mixed precision is applied by tunekit with torch's own autocast (and a ``GradScaler`` for
fp16) instead of accelerate's ``mixed_precision``: accelerate keeps that setting in a
process-wide state that cannot be changed once set, and a process (a notebook, a test
session) may train several models with different precisions one after the other.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch

from .config import TrainingConfig
from .errors import ConfigError
from .tracking import check_trackers, tracking_dir

logger = logging.getLogger("tunekit")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` | ``bf16`` | ``fp16`` for *precision* on *device*.

    ``auto`` is bf16 where the hardware computes it natively — a GPU that supports it, or a
    CPU with AMX or AVX512-BF16 (:func:`tunekit.hardware.native_bf16`), where bf16 autocast
    trains and predicts faster than fp32 at the same accuracy (``docs/benchmarks.md``) —
    and fp32 everywhere else, where bf16 would be emulated and slower.

    Example::

        resolve_precision("auto", torch.device("cpu"))   # 'bf16' on a Sapphire Rapids CPU
    """
    if precision == "auto":
        return "bf16" if auto_bf16(device) else "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision='fp16' needs a GPU; on CPU use precision='bf16' or 'fp32'")
    if precision == "bf16" and device.type == "cpu":
        from .hardware import native_bf16

        if not native_bf16():
            warnings.warn(
                "precision='bf16': this CPU has no native bf16 (AVX512-BF16 or AMX), so bf16 "
                "autocast is emulated and may be slower than precision='fp32'",
                RuntimeWarning,
                stacklevel=2,
            )
    return precision


def auto_bf16(device: torch.device) -> bool:
    """Whether ``precision="auto"`` picks bf16 on *device*: a GPU with bf16 support or a
    CPU with native bf16 arithmetic (AMX or AVX512-BF16)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        from .hardware import native_bf16

        return native_bf16()
    return False


def _auto_reason(precision: str, device: torch.device) -> str:
    """Why ``auto`` resolved to *precision* on *device*, for the log."""
    if device.type == "cpu":
        return (
            "this CPU computes bf16 natively (AMX or AVX512-BF16)"
            if precision == "bf16"
            else "this CPU has no native bf16 (AMX or AVX512-BF16)"
        )
    return f"{device.type} {'supports' if precision == 'bf16' else 'does not support'} bf16"


def make_accelerator(config: TrainingConfig) -> tuple[Any, str]:
    """An ``Accelerator`` for one training run and the precision resolved for its device.

    Each run builds its own; nothing in accelerate's process-wide state is reset (see the
    module docstring for how precision is applied)."""
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.state import PartialState

    # Without a GPU, cpu=True lets torchrun / accelerate launch environments start gloo.
    cpu = not torch.cuda.is_available()
    device = PartialState(cpu=cpu).device
    precision = resolve_precision(config.precision, device)
    if config.precision == "auto":
        logger.info(
            "precision='auto' → %s: %s (pass precision='fp32' or 'bf16' to choose)",
            precision,
            _auto_reason(precision, device),
        )
    accelerator = Accelerator(
        cpu=cpu,
        log_with=list(check_trackers(config.report_to)) or None,
        project_dir=tracking_dir(config) if config.report_to else None,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        # tunekit steps the scheduler once per optimizer update itself; accelerate's
        # wrapper would step it once per process
        step_scheduler_with_optimizer=False,
        rng_types=[],  # tunekit seeds its own batch order
        dataloader_config=DataLoaderConfiguration(even_batches=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    return accelerator, precision


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """The loss scaler fp16 training needs; ``None`` for other precisions."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
