"""One training loop for every task × strategy, on 🤗 accelerate.

The same code runs in one process on CPU, on one GPU, and under ``accelerate launch`` /
``torchrun`` with several processes. Batches are formed by tunekit itself (length-grouped,
seeded by ``seed`` and the epoch, :mod:`tunekit.batching`), so the data order is
reproducible and a resumed run continues exactly where it stopped (:mod:`tunekit.checkpoint`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .acceleration import (
    grad_scaler,
    make_accelerator,
    resolve_precision,
)
from .batching import FeatureDataset, collate_with_index, feature_length, make_batches
from .checkpoint import (
    CHECKPOINTS_DIR,
    LoopState,
    checkpoint_root,
    latest_checkpoint,
    restore_checkpoint,
    run_fingerprint,
    save_checkpoint,
)
from .config import TrainingConfig
from .errors import ConfigError, TrainingError
from .history import History
from .inference import TaskOutputs, autocast_for, fp32_outputs, map_batches
from .progress import Progress, format_row, progress_mode
from .strategy import Strategy
from .task import Feature, Record, Task
from .taskmodel import TaskModel
from .tracking import hparams, tracker_scalars, tracking_dir

if TYPE_CHECKING:
    from .strategies.cache import FeatureCache

# names other modules import from here
__all__ = [
    "CHECKPOINTS_DIR",
    "Trainer",
    "latest_checkpoint",
    "lower_is_better",
    "make_batches",
    "resolve_precision",
    "tracking_dir",
]

logger = logging.getLogger("tunekit")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller *metric* is better (losses, errors, perplexity)."""
    return any(word in metric for word in ("loss", "mse", "mae", "perplexity", "error"))


class Trainer:
    """Train a :class:`TaskModel` for a task with a strategy.

    Example::

        trainer = Trainer(model=model, task=task, strategy=strategy, tokenizer=tok, config=TrainingConfig())
        history = trainer.fit(train_features, eval_features, eval_records)
    """

    def __init__(
        self,
        *,
        model: TaskModel,
        task: Task,
        strategy: Strategy,
        tokenizer: Any,
        config: TrainingConfig,
    ) -> None:
        self.model = model
        self.task = task
        self.strategy = strategy
        self.tokenizer = tokenizer
        self.config = config
        self.accelerator, self.precision = make_accelerator(config)
        device = self.accelerator.device
        if device.type == "cpu":
            from .hardware import configure_threads

            configure_threads(config.num_threads)
        self.scaler = grad_scaler(self.precision, device)
        self.history = History()
        self.loop = LoopState()
        #: trainable weights of the best evaluation so far
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.feature_cache: FeatureCache | None = None
        #: optimizer updates this process ran (after a resume: only those still to do)
        self.steps_run = 0

    @property
    def nan_skips(self) -> int:
        """Batches skipped for a NaN/inf loss (``on_nan="skip"``)."""
        return self.loop.nan_skips

    # ---- data ---------------------------------------------------------------------------
    def _loader(self, features, batches, *, epoch: int | None = None, resumed: bool = False):
        """A loader of *batches*; with *epoch*, training batches (``collate_train``, random
        draws keyed by seed, epoch and batch)."""
        training = epoch is not None
        loader = DataLoader(
            FeatureDataset(features),
            batch_sampler=batches,
            collate_fn=collate_with_index(
                self.task,
                self.tokenizer,
                training=training,
                rng_key=f"{self.config.seed}/{epoch}" if training else None,
            ),
            # A new iterator draws a base seed from the global RNG. The uninterrupted run drew
            # it at the start of the epoch, before the checkpoint's RNG state was saved, so a
            # run resumed mid-epoch draws from its own generator to continue bit for bit.
            generator=torch.Generator().manual_seed(self.config.seed) if resumed else None,
        )
        return self.accelerator.prepare_data_loader(loader)

    def _epoch_batches(self, features: Sequence[Feature], epoch: int) -> list[list[int]]:
        return make_batches(
            [feature_length(f) for f in features],
            batch_size=self.config.batch_size,
            seed=self.config.seed,
            epoch=epoch,
            group_by_length=self.config.group_by_length,
        )

    # ---- training -----------------------------------------------------------------------
    def fit(
        self,
        train_features: Sequence[Feature],
        eval_features: Sequence[Feature] | None = None,
        eval_records: Sequence[Record] | None = None,
    ) -> History:
        """Train; returns the history (one row per evaluation). With ``report_to``, every
        history row and each step's training loss and learning rate go to the trackers."""
        cfg = self.config
        if not cfg.report_to:
            return self._fit(train_features, eval_features, eval_records)
        self.accelerator.init_trackers(
            cfg.run_name or f"tunekit-{self.task.name}-{self.strategy.name}",
            config=hparams(cfg, self.task, self.strategy),
        )
        try:
            return self._fit(train_features, eval_features, eval_records)
        finally:
            self.accelerator.end_training()

    def _log(self, values: dict[str, Any], step: int) -> None:
        if self.config.report_to:
            scalars = {
                k: float(v)
                for k, v in values.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None
            }
            self.accelerator.log(scalars, step=step)

    def _fit(self, train_features, eval_features=None, eval_records=None) -> History:
        """The loop: epochs of batches; after each optimizer update maybe log, evaluate
        (``eval_steps``) and checkpoint (``checkpoint_steps``); at each epoch's end evaluate
        and checkpoint; at the end restore the best evaluation's weights."""
        cfg, acc = self.config, self.accelerator
        _seed_everything(cfg.seed)
        self._describe(train_features)
        model, optimizer, scheduler, total_updates = self._prepare(train_features)
        self._eval = (eval_features or [], eval_records or [])
        self.loop, self.best_weights, self.steps_run = LoopState(), None, 0
        fingerprint = (
            run_fingerprint(
                task=self.task,
                strategy=self.strategy,
                model=self.model,
                config=cfg,
                train_features=train_features,
                eval_features=eval_features or [],
                processes=acc.num_processes,
            )
            if cfg.output_dir
            else {}
        )
        if cfg.resume:
            self._resume(fingerprint, total_updates=total_updates)
        loop = self.loop
        self._progress = bar = Progress(
            total=total_updates,
            initial=loop.global_step,
            mode=progress_mode(cfg.progress, main=acc.is_main_process),
            desc="training",
        )
        # The loss is summed on the device and read back (a host synchronisation) only every
        # logging_steps, at evaluations and at checkpoints. On a GPU the finiteness check is
        # deferred the same way unless on_nan="skip" needs it before each optimizer step.
        self._running = _RunningLoss(loop.loss_sum, acc.device)
        self._synced_step = loop.global_step
        check_each_step = _check_each_step(acc.device, cfg.on_nan)
        compile_pending = bool(cfg.compile)
        start_time = period_start = time.perf_counter()

        def checkpoint() -> None:
            self._sync_loss()
            save_checkpoint(
                acc,
                checkpoint_root(cfg),
                loop=loop,
                history=self.history,
                best_weights=self.best_weights,
                fingerprint=fingerprint,
                training=cfg,
                scaler=self.scaler,
            )

        while loop.epoch < cfg.epochs and not loop.stopped:
            batches = self._epoch_batches(train_features, loop.epoch)
            per_process = max(math.ceil(len(batches) / acc.num_processes), 1)
            loader = self._loader(
                train_features, batches, epoch=loop.epoch, resumed=bool(loop.batch)
            )
            if loop.batch:
                from accelerate import skip_first_batches

                loader = skip_first_batches(loader, loop.batch)
            model.train()
            for batch in loader:
                loop.batch += 1
                index = batch.pop("_index", None)
                if compile_pending:
                    compile_pending = False
                    self._compile(model, batch, train_features, index)
                loss = self._train_step(
                    model, optimizer, scheduler, batch, train_features, index, check_each_step
                )
                if loss is None:  # a NaN/inf loss skipped (on_nan="skip")
                    continue
                self._running.add(loss)
                loop.loss_count += 1
                if not acc.sync_gradients:
                    continue
                loop.global_step += 1
                self.steps_run += 1
                step = loop.global_step
                bar.update(1)
                if cfg.report_to:
                    self._log(
                        {
                            "train/loss": loss.detach().float().item(),
                            "train/learning_rate": scheduler.get_last_lr()[0],
                        },
                        step,
                    )
                if step % cfg.logging_steps == 0:
                    self._sync_loss()
                    mean = loop.loss_sum / max(loop.loss_count, 1)
                    bar.set_postfix(loss=f"{mean:.4f}")
                if cfg.eval_steps and step % cfg.eval_steps == 0:
                    epoch = round(loop.epoch + loop.batch / per_process, 2)
                    self._end_period(model, epoch=epoch, seconds=time.perf_counter() - period_start)
                    period_start = time.perf_counter()
                    model.train()
                    if loop.stopped:
                        break
                # the last batch of an epoch is checkpointed once the epoch's row is in
                every = cfg.checkpoint_steps
                if cfg.output_dir and every and step % every == 0 and loop.batch < per_process:
                    checkpoint()
            if loop.stopped:
                break
            loop.epoch, loop.batch = loop.epoch + 1, 0
            self._end_period(model, epoch=loop.epoch, seconds=time.perf_counter() - period_start)
            period_start = time.perf_counter()
            if cfg.output_dir:
                checkpoint()
        bar.close()
        self.history.info["train_seconds"] = round(time.perf_counter() - start_time, 3)
        self.history.info["nan_skips"] = loop.nan_skips
        if self._eval[0] and self.best_weights is not None:
            self.history.info["best_metric"] = {self._selection()[0]: loop.best}
            acc.unwrap_model(model).load_state_dict(self.best_weights, strict=False)
        acc.wait_for_everyone()
        logger.info(
            "%d optimizer steps run by this process (global step %d of %d)",
            self.steps_run,
            loop.global_step,
            total_updates,
        )
        self.model = acc.unwrap_model(model)
        self.model.eval()
        return self.history

    def _describe(self, train_features: Sequence[Feature]) -> None:
        """Refuse what cannot train; record and log the parameter counts and the device."""
        if not train_features:
            raise TrainingError("no training features: the training data is empty after encoding")
        trainable, total = self.model.trainable_parameters()
        if trainable == 0:
            raise TrainingError(f"strategy {self.strategy.name!r} left no trainable parameter")
        acc = self.accelerator
        self.history.info.update(
            trainable_params=trainable,
            total_params=total,
            trainable_percent=round(100.0 * trainable / total, 4),
            precision=self.precision,
            device=str(acc.device),
            processes=acc.num_processes,
        )
        logger.info(
            "training %s with strategy %s: %d / %d parameters trainable (%.2f%%), %s on %s",
            self.task.name,
            self.strategy.name,
            trainable,
            total,
            100.0 * trainable / total,
            self.precision,
            acc.device,
        )

    def _prepare(self, train_features: Sequence[Feature]):
        """The optimizer, the learning-rate schedule and the feature cache; the model,
        optimizer and scheduler handed to accelerate (which then checkpoints them)."""
        cfg, acc = self.config, self.accelerator
        groups = self.strategy.parameter_groups(
            self.model, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        optimizer = _adamw(groups, lr=cfg.learning_rate)
        per_epoch = math.ceil(len(self._epoch_batches(train_features, 0)) / acc.num_processes)
        total_updates = math.ceil(per_epoch / cfg.gradient_accumulation_steps) * cfg.epochs
        from transformers import get_scheduler

        scheduler = get_scheduler(
            cfg.scheduler if cfg.scheduler != "constant" else "constant_with_warmup",
            optimizer,
            num_warmup_steps=int(cfg.warmup_ratio * total_updates),
            num_training_steps=total_updates,
        )
        if cfg.gradient_checkpointing:
            _enable_gradient_checkpointing(self.model)
        model, optimizer, scheduler = acc.prepare(self.model, optimizer, scheduler)
        self.strategy.on_train_begin(acc.unwrap_model(model), total_steps=total_updates)
        self._setup_feature_cache()
        return model, optimizer, scheduler, total_updates

    def _train_step(self, model, optimizer, scheduler, batch, features, index, check_each_step):
        """Forward, backward and (at the end of an accumulation) the optimizer update of one
        batch; its loss, or ``None`` when a NaN/inf loss was skipped."""
        cfg, acc, loop = self.config, self.accelerator, self.loop
        with acc.accumulate(model):
            loss = self.task.loss(self._forward(model, batch, features, index), batch)
            if check_each_step and not torch.isfinite(loss.detach()).all():
                if cfg.on_nan == "skip":
                    loop.nan_skips += 1
                    optimizer.zero_grad(set_to_none=True)
                    return None
                raise TrainingError(
                    f"the loss became {loss.item()} at epoch {loop.epoch + 1}, batch {loop.batch} "
                    f"(global step {loop.global_step}); lower learning_rate, use precision='fp32', "
                    f"check the data for extreme values, or pass on_nan='skip'. "
                    + ("The last checkpoint is kept in output_dir." if cfg.output_dir else "")
                )
            acc.backward(self.scaler.scale(loss) if self.scaler else loss)
            if acc.sync_gradients:
                if self.scaler:
                    self.scaler.unscale_(optimizer)
                if cfg.max_grad_norm:
                    acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                if self.scaler:
                    self.scaler.step(optimizer)
                    self.scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                self.strategy.after_optimizer_step(
                    acc.unwrap_model(model), global_step=loop.global_step + 1
                )
            optimizer.zero_grad(set_to_none=True)
        return loss

    def _sync_loss(self) -> None:
        """Read the running loss back from the device into the loop state (and, where the
        check was deferred, refuse a loss that became NaN/inf since the last read)."""
        loop = self.loop
        loop.loss_sum = self._running.value()
        if not _check_each_step(self.accelerator.device, self.config.on_nan) and not math.isfinite(
            loop.loss_sum
        ):
            raise TrainingError(
                f"the loss became {loop.loss_sum} between global steps {self._synced_step} and "
                f"{loop.global_step} (epoch {loop.epoch + 1}); lower learning_rate, use "
                f"precision='fp32', check the data for extreme values, or pass on_nan='skip'."
            )
        self._synced_step = loop.global_step

    def _selection(self) -> tuple[str, bool]:
        """The metric that picks the best model and whether greater is better."""
        cfg = self.config
        metric = cfg.metric_for_best or self.task.default_metric
        if cfg.metric_for_best is None and self.task.greater_is_better is not None:
            return metric, self.task.greater_is_better
        return metric, not lower_is_better(metric)

    def _end_period(self, model, *, epoch: float, seconds: float) -> None:
        """The one evaluate-and-select path (every ``eval_steps`` and at each epoch's end):
        a history row with the period's training loss and the evaluation's metrics; keeps
        the best weights, counts evaluations without improvement for early stopping."""
        self._sync_loss()
        loop = self.loop
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": loop.global_step,
            "train_loss": loop.loss_sum / loop.loss_count if loop.loss_count else None,
        }
        features, records = self._eval
        if features:
            metrics, _ = self.evaluate(features, records, model=model)
            row.update(metrics)
            metric, greater = self._selection()
            value = metrics.get(metric)
            if value is None:
                raise ConfigError(
                    f"metric_for_best={metric!r} is not computed by task {self.task.name!r}; "
                    f"choose one of {', '.join(sorted(metrics))}"
                )
            if loop.best is None or (value > loop.best if greater else value < loop.best):
                loop.best, loop.bad_evals = value, 0
                unwrapped = self.accelerator.unwrap_model(model)
                trained = {n for n, p in unwrapped.named_parameters() if p.requires_grad}
                self.best_weights = {
                    k: v.detach().cpu().clone()
                    for k, v in unwrapped.state_dict().items()
                    if k in trained
                }
            else:
                loop.bad_evals += 1
                patience = self.config.early_stopping_patience
                if patience and loop.bad_evals >= patience:
                    loop.stopped = True
                    logger.info(
                        "early stopping: %s did not improve for %d evaluations", metric, patience
                    )
        row["seconds"] = round(seconds, 3)
        self.history.append(row)
        self._progress.row(format_row(row, epochs=self.config.epochs))
        self._log(tracker_scalars(row), loop.global_step)
        loop.loss_sum, loop.loss_count = 0.0, 0
        self._running = _RunningLoss(0.0, self.accelerator.device)

    def _resume(self, fingerprint: dict[str, Any], *, total_updates: int) -> None:
        """Continue from the latest checkpoint in ``output_dir`` if it is this run's."""
        path = latest_checkpoint(checkpoint_root(self.config))
        if path is None:
            logger.info(
                "resume=True but no checkpoint in %s; starting from scratch",
                checkpoint_root(self.config),
            )
            return
        restored = restore_checkpoint(self.accelerator, path, fingerprint=fingerprint)
        blocker = self.strategy.resume_blocker()
        finished = restored.loop.stopped or restored.loop.global_step >= total_updates
        if blocker and not finished:  # a finished run has nothing left to continue
            raise ConfigError(
                f"cannot resume from {path}: {blocker}. Train again without resume=True "
                "(or with strategy 'lora' / peft method='ia3', which resume exactly)"
            )
        self.loop, self.best_weights = restored.loop, restored.best_weights
        self.history.rows = restored.history
        self.history.info.update(restored.info)
        if self.scaler is not None and restored.scaler:
            self.scaler.load_state_dict(restored.scaler)
        logger.info(
            "resumed from %s at global step %d (epoch %d, batch %d)",
            path,
            self.loop.global_step,
            self.loop.epoch + 1,
            self.loop.batch,
        )

    def _setup_feature_cache(self) -> None:
        self.feature_cache = None
        if not self.strategy.cache_features or not getattr(self.task, "cacheable_inputs", True):
            return
        from .strategies.cache import FeatureCache

        self.feature_cache = FeatureCache(
            self.model,
            collate=lambda feats: self.task.collate(feats, self.tokenizer),
            batch_size=self.config.eval_batch_size or self.config.batch_size * 2,
            cache_dir=self.strategy.cache_dir,
            autocast=self._autocast,
            padding_side=getattr(self.tokenizer, "padding_side", "right") or "right",
            tag=f"{self.precision}",
        )

    def _compile(self, model, batch, features, index) -> None:
        """``torch.compile`` the model's forward in place (``compile=True`` or a backend
        name), checked by one compiled forward and backward on the first batch. If that
        fails (no compiler, an unsupported model or backend), a warning says why and the
        model trains eagerly. The check leaves no trace: gradients are cleared and the
        random state (dropout) is restored, so the run equals an uncompiled one."""
        module = self.accelerator.unwrap_model(model)
        backend = "inductor" if self.config.compile is True else str(self.config.compile)
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            compiled = self._compile_check(module, model, batch, features, index, backend)
        self.history.info["compiled"] = compiled

    def _compile_check(self, module, model, batch, features, index, backend) -> bool:
        import warnings

        eager_forward = module.forward
        with torch.no_grad():
            # one eager forward first: the model sets up state lazily on its first call
            # (the first-token path, the encoder's input keys); compiled, that state change
            # would be a graph break and a recompile of every later shape
            self._forward(model, dict(batch), features, index)
        try:
            # torch's default shape handling: the first shape compiles static, a second one
            # recompiles with dynamic lengths, which then serves every later batch
            module.forward = torch.compile(eager_forward, backend=backend)
            loss = self.task.loss(self._forward(model, dict(batch), features, index), batch)
            loss.backward()
            return True
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: train eagerly
            module.forward = eager_forward
            cause: BaseException = exc  # the compiler's own error, not dynamo's wrapper
            while (inner := getattr(cause, "inner_exception", None) or cause.__cause__) is not None:
                cause = inner
            message = str(cause).strip().splitlines()
            warnings.warn(
                f"compile={self.config.compile!r}: torch.compile failed "
                f"({type(cause).__name__}: {message[0] if message else ''}); training without it",
                RuntimeWarning,
                stacklevel=2,
            )
            return False
        finally:
            module.zero_grad(set_to_none=True)

    def _forward(self, model, batch, features, index):
        """``model(batch)`` in the run's precision (under autocast, the outputs back in fp32
        so that the loss is computed in fp32), or the trainable part on cached encoder
        features."""
        cache = getattr(self, "feature_cache", None)
        with self._autocast():
            if cache is None or index is None:
                outputs = model(batch)
            else:
                outputs = model(batch, features=cache.batch(features, index, batch))
        return fp32_outputs(outputs)

    def _autocast(self):
        """The autocast context of the run's precision (a no-op for fp32)."""
        return autocast_for(self.accelerator.device, self.precision)

    # ---- evaluation / prediction --------------------------------------------------------
    def outputs(
        self, features: Sequence[Feature], *, model=None
    ) -> tuple[list[dict[str, np.ndarray]], float | None]:
        """Per-feature outputs (``task.batch_outputs``), in feature order, and the mean loss
        when the features carry labels, through :func:`tunekit.inference.map_batches`.

        Each process runs the features ``rank, rank + world, …`` (no feature is duplicated to
        even out shards, so the loss and the gathered outputs count every feature once). The
        model is used unwrapped: the DDP wrapper's forward syncs buffers, a collective, and
        with uneven shards one process would wait for the other. Evaluation draws no random
        numbers, so evaluating between steps does not change the training trajectory."""
        acc = self.accelerator
        inner = acc.unwrap_model(model) if model is not None else self.model.to(acc.device)
        mine = list(range(acc.process_index, len(features), acc.num_processes))
        positions = torch.tensor(mine, dtype=torch.long)
        has_labels = bool(features) and "labels" in features[0]

        def call(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return self._forward(inner, batch, features, positions[batch.pop("_index")])

        forward = TaskOutputs(self.task, call, with_loss=has_labels)
        rows = map_batches(
            inner,
            [features[i] for i in mine],
            forward,
            collate=lambda feats: self.task.collate(feats, self.tokenizer),
            batch_size=self.config.eval_batch_size or self.config.batch_size * 2,
            keep=lambda _feature, row: {k: v.numpy() for k, v in row.items()},
            grad_mode=torch.no_grad,
            index_key="_index",
        )
        loss_total, loss_n = forward.loss_total, forward.loss_n
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            shards = gather_object([(mine, rows)])
            by_index = {i: row for part, got in shards for i, row in zip(part, got, strict=True)}
            rows = [by_index[i] for i in range(len(features))]
            totals = acc.gather(torch.tensor([loss_total, float(loss_n)], device=acc.device))
            totals = totals.view(-1, 2).sum(0)
            loss_total, loss_n = float(totals[0]), int(totals[1])
        return rows, (loss_total / loss_n if loss_n else None)

    def evaluate(
        self, features: Sequence[Feature], records: Sequence[Record], *, model=None
    ) -> tuple[dict[str, float], list[Any]]:
        outputs, loss = self.outputs(features, model=model)
        predictions = self.task.decode(outputs, features, records)
        metrics: dict[str, float] = {}
        if loss is not None:
            metrics["eval_loss"] = loss
        metrics.update(self.task.metrics(predictions, records))
        return metrics, predictions


def _adamw(groups, *, lr: float):
    """AdamW with the fused kernel (one kernel for all parameters, on CPU as on GPU: ~4×
    faster optimizer steps on MiniLM here), else the multi-tensor one, else the plain loop."""
    for kind in ({"fused": True}, {"foreach": True}, {}):
        try:
            return torch.optim.AdamW(groups, lr=lr, **kind)
        except (RuntimeError, TypeError, ValueError):
            continue
    raise AssertionError("unreachable")


class _RunningLoss:
    """The training loss summed on the device in float64 (the same sums as Python floats),
    read back only when shown or recorded."""

    def __init__(self, start: float, device: torch.device) -> None:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.total = torch.tensor(start, dtype=dtype, device=device)

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach().float().to(self.total.dtype)

    def value(self) -> float:
        return float(self.total)


def _enable_gradient_checkpointing(model: TaskModel) -> None:
    """Recompute each encoder layer's activations in the backward pass instead of keeping
    them (``gradient_checkpointing=True``): activation memory falls to about one layer's,
    for about one more forward pass of compute. Non-reentrant checkpointing restores the
    random state, so dropout draws, and thus the result, match a run without it."""
    encoder = model.encoder
    base = getattr(encoder, "get_base_model", lambda: encoder)()
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"gradient_checkpointing=True: the encoder {type(base).__name__} does not support "
            f"gradient checkpointing; drop the option or use another model"
        )
    options = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5 names it so
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


def _check_each_step(device: torch.device, on_nan: str) -> bool:
    """Check each loss for NaN/inf before the optimizer step? Free on CPU, and needed to
    skip bad batches; on a GPU otherwise deferred to the next loss read, as the check waits
    for the GPU and stalls the queue of work ahead."""
    return device.type == "cpu" or on_nan == "skip"


def _seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
