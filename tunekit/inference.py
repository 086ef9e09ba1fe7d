"""Batched inference outside the trainer: length-sorted batches, original order restored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .hardware import configure_threads
from .task import Feature, Task
from .taskmodel import TaskModel


def autocast_for(device: torch.device, precision: str):
    """An autocast context for *precision* on *device* (a no-op for fp32)."""
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return torch.autocast(device_type=device.type, enabled=False)


@torch.inference_mode()
def compute_outputs(
    model: TaskModel,
    task: Task,
    tokenizer: Any,
    features: Sequence[Feature],
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    with_loss: bool = False,
) -> tuple[list[dict[str, np.ndarray]], float | None]:
    """Per-feature outputs of ``task.batch_outputs`` in feature order (and the mean loss).

    Features are batched longest first so padding is small; order is restored after.
    Runs under ``torch.inference_mode()`` (no autograd bookkeeping at all); on CPU the
    thread count is capped at the CPUs usable here (:func:`tunekit.hardware.configure_threads`).
    """
    device = next(model.parameters()).device
    if device.type == "cpu":
        configure_threads()
    model.eval()
    order = sorted(range(len(features)), key=lambda i: -len(features[i].get("input_ids", ())))
    results: list[dict[str, np.ndarray] | None] = [None] * len(features)
    loss_total, loss_n = 0.0, 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = task.collate([features[i] for i in idx], tokenizer)
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast_for(device, precision):
            outputs = model(batch)
            if with_loss:
                loss_total += float(task.loss(outputs, batch)) * len(idx)
                loss_n += len(idx)
            kept = task.batch_outputs(outputs, batch)
        cpu = {
            k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().numpy()
            for k, v in kept.items()
        }
        for j, i in enumerate(idx):
            results[i] = {k: v[j] for k, v in cpu.items()}
    return results, (loss_total / loss_n if loss_n else None)  # type: ignore[return-value]
