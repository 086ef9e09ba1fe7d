"""Batched inference: one loop (:func:`map_batches`) for evaluation, ``Run.predict``, the
feature cache, bi-encoder and topic embeddings; length-sorted batches, order restored."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
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


class TaskOutputs:
    """A :func:`map_batches` forward for a task: ``call(batch)`` under *context* (an
    autocast: the model runs in the run's precision), its outputs made fp32 before anything
    reads them; the loss summed over the features when *with_loss* (outside the autocast,
    as in training); ``task.batch_outputs`` in fp32 as the rows. ``call`` may pop extra keys
    from the batch (an ``index_key``) before the model sees it. :func:`compute_outputs` and
    the trainer's evaluation both run it."""

    def __init__(
        self,
        task: Task,
        call: Callable[[dict[str, torch.Tensor]], Mapping[str, torch.Tensor]],
        *,
        context: Callable[[], AbstractContextManager[Any]] = nullcontext,
        with_loss: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.task, self.call, self.context = task, call, context
        self.with_loss, self.on_batch = with_loss, on_batch
        self.loss_total, self.loss_n = 0.0, 0

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with self.context():
            outputs = fp32_outputs(self.call(batch))
        n = len(next(iter(batch.values())))
        if self.with_loss:
            self.loss_total += float(self.task.loss(outputs, batch)) * n
            self.loss_n += n
        if self.on_batch is not None:  # progress: n more features done
            self.on_batch(n)
        return fp32_outputs(self.task.batch_outputs(outputs, batch))

    @property
    def mean_loss(self) -> float | None:
        """The mean loss per feature so far (``None`` without labels or features)."""
        return self.loss_total / self.loss_n if self.loss_n else None


def fp32_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """*outputs* with every floating tensor as fp32 (the same tensor when it is fp32
    already): what a forward under autocast hands on, so that losses and decoding read
    fp32."""
    return {
        k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
        for k, v in outputs.items()
    }


#: records encoded, run and decoded at a time by ``predict()`` / ``evaluate()`` (the
#: features and kept outputs of one chunk are in memory at once)
RECORDS_PER_CHUNK = 2048


def map_batches(
    model: torch.nn.Module,
    features: Sequence[Feature],
    forward: Callable[[dict[str, torch.Tensor]], Mapping[str, torch.Tensor]],
    *,
    collate: Callable[[list[Feature]], Mapping[str, torch.Tensor]],
    batch_size: int = 64,
    context: Callable[[], AbstractContextManager[Any]] | None = None,
    keep: Callable[[Feature, dict[str, torch.Tensor]], Any] | None = None,
    grad_mode: Callable[[], AbstractContextManager[Any]] = torch.inference_mode,
    index_key: str | None = None,
) -> list[Any]:
    """The one batched-inference loop: *forward* over length-sorted batches of *features*,
    one result per feature, in feature order.

    Features are batched longest first (little padding) with *collate*, moved to the
    model's device and run through ``forward(batch) → {name: batch-first tensor}`` in eval
    mode under *grad_mode* (``torch.inference_mode`` by default; ``torch.no_grad`` when the
    results later feed autograd, as cached encoder features do) and *context* (e.g. an
    autocast). The outputs move to the CPU once per batch; ``keep(feature, row)`` turns each
    feature's row (``{name: tensor}``) into what is returned (default: the row). The model's
    train/eval mode is restored after. With *index_key*, each batch also carries the
    positions of its features in *features* under that key (a long tensor), for a *forward*
    that looks rows up by position (the trainer's cached encoder features); *forward* must
    pop it. No random state is read or drawn, so running inference between training steps
    leaves the training trajectory unchanged. Evaluation during training, ``Run.predict``
    (through :func:`compute_outputs`), the frozen-encoder feature cache, bi-encoder
    embeddings and topic embeddings all run here.

    Example::

        rows = map_batches(model, features, lambda b: {"emb": model.hidden_states(b)[:, 0]},
                           collate=lambda fs: dict(tokenizer.pad(fs, return_tensors="pt")))
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(features)), key=lambda i: -len(features[i].get("input_ids", ())))
    results: list[Any] = [None] * len(features)
    try:
        with grad_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = {k: v.to(device) for k, v in collate([features[i] for i in idx]).items()}
                if index_key is not None:
                    batch[index_key] = torch.tensor(idx, dtype=torch.long)
                with context() if context is not None else nullcontext():
                    outputs = forward(batch)
                cpu = {k: v.detach().cpu() for k, v in outputs.items()}
                for j, i in enumerate(idx):
                    row = {k: v[j] for k, v in cpu.items()}
                    results[i] = keep(features[i], row) if keep is not None else row
    finally:
        model.train(was_training)
    return results


def compute_outputs(
    model: TaskModel,
    task: Task,
    tokenizer: Any,
    features: Sequence[Feature],
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    with_loss: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[dict[str, np.ndarray]], float | None]:
    """Per-feature outputs of ``task.batch_outputs`` in feature order (and the mean loss),
    through :func:`map_batches`: length-sorted batches, ``torch.inference_mode()`` (no
    autograd bookkeeping at all), the run's precision; on CPU the thread count is capped at
    the CPUs usable here (:func:`tunekit.hardware.configure_threads`). *on_batch* is called
    with the number of features of each batch done (progress reporting).

    Example::

        outputs, loss = compute_outputs(model, task, tokenizer, features, with_loss=True)
        task.decode(outputs, features, records)
    """
    device = next(model.parameters()).device
    if device.type == "cpu":
        configure_threads()
    forward = TaskOutputs(
        task,
        model,
        context=lambda: autocast_for(device, precision),
        with_loss=with_loss,
        on_batch=on_batch,
    )
    results = map_batches(
        model,
        features,
        forward,
        collate=lambda fs: task.collate(fs, tokenizer),
        batch_size=batch_size,
        keep=lambda feature, row: {k: v.numpy() for k, v in row.items()},
    )
    return results, forward.mean_loss
