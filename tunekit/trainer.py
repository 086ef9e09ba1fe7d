"""One training loop for every task × strategy, on 🤗 accelerate.

The same code runs in one process on CPU, on one GPU, and under ``accelerate launch`` /
``torchrun`` with several processes. Batches are formed by tunekit itself (length-grouped,
seeded by ``seed`` and the epoch), so the data order is reproducible and a resumed run
continues exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .atomic import atomic_directory
from .config import TrainingConfig, config_to_dict
from .errors import ConfigError, TrainingError
from .history import History
from .strategy import Strategy
from .task import Feature, Record, Task
from .taskmodel import TaskModel

logger = logging.getLogger("tunekit")

CHECKPOINTS_DIR = "checkpoints"


def make_batches(
    lengths: Sequence[int],
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    group_by_length: bool = True,
) -> list[list[int]]:
    """Index batches for one epoch: shuffled, then grouped by length inside mega-batches of
    50 batches so padding is small while the order stays random. Deterministic in
    (*seed*, *epoch*)."""
    order = list(range(len(lengths)))
    rng = random.Random(seed * 100_003 + epoch)
    if shuffle:
        rng.shuffle(order)
    if group_by_length:
        mega = batch_size * 50
        grouped: list[int] = []
        for start in range(0, len(order), mega):
            chunk = order[start : start + mega]
            grouped += sorted(chunk, key=lambda i: -lengths[i])
        order = grouped
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle and group_by_length:
        rng.shuffle(batches)
    return batches


class _Features(Dataset):
    def __init__(self, features: Sequence[Feature]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[int, Feature]:
        return index, self.features[index]


def _collate_with_index(task: Task, tokenizer: Any, *, training: bool = False):
    collate_features = task.collate_train if training else task.collate

    def collate(items: list[tuple[int, Feature]]) -> dict[str, torch.Tensor]:
        batch = collate_features([f for _, f in items], tokenizer)
        batch["_index"] = torch.tensor([i for i, _ in items], dtype=torch.long)
        return batch

    return collate


def feature_length(feature: Feature) -> int:
    return len(feature["input_ids"]) if "input_ids" in feature else 1


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` | ``bf16`` | ``fp16`` for *precision* on *device* (``auto``: bf16 on a GPU that has it)."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision='fp16' needs a GPU; on CPU use precision='bf16' or 'fp32'")
    if precision == "bf16" and device.type == "cpu":
        from .hardware import native_bf16

        if not native_bf16():
            import warnings

            warnings.warn(
                "precision='bf16': this CPU has no native bf16 (AVX512-BF16 or AMX), so bf16 "
                "autocast is emulated and may be slower than precision='fp32'",
                RuntimeWarning,
                stacklevel=2,
            )
    return precision


def _accelerate_precision(precision: str) -> str:
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def make_accelerator(config: TrainingConfig):
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState, PartialState

    # Without a GPU, cpu=True lets torchrun / accelerate launch environments start gloo.
    cpu = not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    precision = resolve_precision(config.precision, state.device)
    # A process may train several models with different settings (notebooks, tests).
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(
        cpu=cpu,
        log_with=list(check_trackers(config.report_to)) or None,
        project_dir=tracking_dir(config) if config.report_to else None,
        mixed_precision=_accelerate_precision(precision),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        rng_types=[],  # tunekit seeds its own batch order
        dataloader_config=DataLoaderConfiguration(even_batches=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    ), precision


#: the package each tracker needs (what to ``pip install``)
TRACKER_PACKAGES = {"comet_ml": "comet-ml"}


def check_trackers(names: Sequence[str]) -> tuple[str, ...]:
    """*names* (``report_to``), after checking that each tracker's library is installed.

    accelerate silently drops a tracker whose library is missing; tunekit refuses instead,
    so that a run meant to be tracked does not go unrecorded."""
    if not names:
        return ()
    from accelerate.tracking import get_available_trackers

    available = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in available:
            package = TRACKER_PACKAGES.get(name, name)
            raise ConfigError(
                f"report_to={name!r} needs the {package} package, which is not installed; "
                f"pip install {package}"
                + (" (or tunekit[tensorboard])" if name == "tensorboard" else "")
                + ", or drop it from report_to"
            )
    return tuple(names)


def tracking_dir(config: TrainingConfig) -> str:
    """Where local trackers (tensorboard...) write: ``logging_dir``, else
    ``output_dir/logs``, else ``./runs``."""
    if config.logging_dir:
        return config.logging_dir
    return str(Path(config.output_dir) / "logs") if config.output_dir else "runs"


def _hparams(config: TrainingConfig, task: Task, strategy: Strategy) -> dict[str, Any]:
    """Run options as the flat scalars trackers accept (tensorboard's hparams)."""
    values: dict[str, Any] = {"task": task.name, "strategy": strategy.name}
    for prefix, options in (
        ("", config_to_dict(config)),
        ("task.", config_to_dict(task.config)),
        ("strategy.", config_to_dict(strategy.config)),
    ):
        for key, value in options.items():
            if not isinstance(value, (bool, int, float, str)):
                value = json.dumps(value, default=str)
            values[prefix + key] = value
    return values


def tracker_scalars(row: dict[str, Any]) -> dict[str, Any]:
    """A history row under trackers' names: ``train/epoch``, ``train/mean_loss``,
    ``train/seconds``, ``eval/loss`` and ``eval/<metric>``."""
    names = {"epoch": "train/epoch", "train_loss": "train/mean_loss", "seconds": "train/seconds"}
    return {
        names.get(key, "eval/" + key.removeprefix("eval_")): value
        for key, value in row.items()
        if key != "step"
    }


def _progress_enabled(config: TrainingConfig, main: bool) -> bool:
    if not main:
        return False
    if config.progress is not None:
        return bool(config.progress)
    return sys.stderr.isatty()


def lower_is_better(metric: str) -> bool:
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
        if self.accelerator.device.type == "cpu":
            from .hardware import configure_threads

            configure_threads(config.num_threads)
        self.history = History()
        self.nan_skips = 0

    # ---- data ---------------------------------------------------------------------------
    def _loader(
        self,
        features: Sequence[Feature],
        batches: list[list[int]],
        *,
        training: bool = False,
        resumed: bool = False,
    ):
        loader = DataLoader(
            _Features(features),
            batch_sampler=batches,
            collate_fn=_collate_with_index(self.task, self.tokenizer, training=training),
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
            config=_hparams(cfg, self.task, self.strategy),
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

    def _fit(
        self,
        train_features: Sequence[Feature],
        eval_features: Sequence[Feature] | None = None,
        eval_records: Sequence[Record] | None = None,
    ) -> History:
        cfg = self.config
        acc = self.accelerator
        _seed_everything(cfg.seed)
        if not train_features:
            raise TrainingError("no training features: the training data is empty after encoding")
        trainable, total = self.model.trainable_parameters()
        if trainable == 0:
            raise TrainingError(f"strategy {self.strategy.name!r} left no trainable parameter")
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
        groups = self.strategy.parameter_groups(
            self.model, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        optimizer = _adamw(groups, lr=cfg.learning_rate)
        per_epoch = math.ceil(len(self._epoch_batches(train_features, 0)) / acc.num_processes)
        updates_per_epoch = math.ceil(per_epoch / cfg.gradient_accumulation_steps)
        total_updates = updates_per_epoch * cfg.epochs
        from transformers import get_scheduler

        scheduler = get_scheduler(
            cfg.scheduler if cfg.scheduler != "constant" else "constant_with_warmup",
            optimizer,
            num_warmup_steps=int(cfg.warmup_ratio * total_updates),
            num_training_steps=total_updates,
        )
        if cfg.gradient_checkpointing:
            _enable_gradient_checkpointing(self.model)
        model, optimizer = acc.prepare(self.model, optimizer)
        self.strategy.on_train_begin(acc.unwrap_model(model), total_steps=total_updates)
        self._setup_feature_cache()

        metric = cfg.metric_for_best or self.task.default_metric
        greater = (
            self.task.greater_is_better
            if cfg.metric_for_best is None and self.task.greater_is_better is not None
            else not lower_is_better(metric)
        )
        state = {
            "epoch": 0,
            "batch": 0,
            "global_step": 0,
            "best": None,
            "bad_evals": 0,
            "stopped": False,
            "loss_sum": 0.0,
            "loss_count": 0,
        }
        best_state: dict[str, torch.Tensor] | None = None
        if cfg.resume:
            restored = self._restore(model, optimizer, scheduler)
            if restored is not None:
                state, best_state = restored
        has_eval = bool(eval_features)
        progress = _progress_enabled(cfg, acc.is_main_process)
        from tqdm.auto import tqdm

        bar = tqdm(
            total=total_updates,
            initial=state["global_step"],
            disable=not progress,
            desc="training",
            unit="step",
        )
        # The loss is summed on the device and read back (a host synchronisation) only every
        # logging_steps, at evaluations and at checkpoints. On a GPU the finiteness check is
        # deferred the same way unless on_nan="skip" needs it before each optimizer step.
        running = _RunningLoss(state["loss_sum"], acc.device)
        check_each_step = _check_each_step(acc.device, cfg.on_nan)
        synced_step = state["global_step"]

        def sync_loss() -> None:
            nonlocal synced_step
            state["loss_sum"] = running.value()
            if not check_each_step and not math.isfinite(state["loss_sum"]):
                raise TrainingError(
                    f"the loss became {state['loss_sum']} between global steps {synced_step} and "
                    f"{state['global_step']} (epoch {state['epoch'] + 1}); lower learning_rate, use "
                    f"precision='fp32', check the data for extreme values, or pass on_nan='skip'."
                )
            synced_step = state["global_step"]

        compile_pending = bool(cfg.compile)
        start_time = time.perf_counter()
        epoch_time = time.perf_counter()
        while state["epoch"] < cfg.epochs and not state["stopped"]:
            epoch = state["epoch"]
            batches = self._epoch_batches(train_features, epoch)
            loader = self._loader(
                train_features, batches, training=True, resumed=bool(state["batch"])
            )
            if state["batch"]:
                from accelerate import skip_first_batches

                loader = skip_first_batches(loader, state["batch"])
            model.train()
            for batch in loader:
                state["batch"] += 1
                with acc.accumulate(model):
                    index = batch.pop("_index", None)
                    if compile_pending:
                        compile_pending = False
                        self._compile(model, batch, train_features, index)
                    outputs = self._forward(model, batch, train_features, index)
                    loss = self.task.loss(outputs, batch)
                    if check_each_step and not torch.isfinite(loss.detach()).all():
                        if cfg.on_nan == "skip":
                            self.nan_skips += 1
                            optimizer.zero_grad(set_to_none=True)
                            continue
                        raise TrainingError(
                            f"the loss became {loss.item()} at epoch {epoch + 1}, batch {state['batch']} "
                            f"(global step {state['global_step']}); lower learning_rate, use precision='fp32', "
                            f"check the data for extreme values, or pass on_nan='skip'. "
                            + (
                                "The last checkpoint is kept in output_dir."
                                if cfg.output_dir
                                else ""
                            )
                        )
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.max_grad_norm:
                        acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    if acc.sync_gradients:
                        scheduler.step()
                        self.strategy.after_optimizer_step(
                            model, global_step=state["global_step"] + 1
                        )
                    optimizer.zero_grad(set_to_none=True)
                running.add(loss)
                state["loss_count"] += 1
                if acc.sync_gradients:
                    state["global_step"] += 1
                    if cfg.report_to:
                        self._log(
                            {
                                "train/loss": loss.detach().float().item(),
                                "train/learning_rate": scheduler.get_last_lr()[0],
                            },
                            int(state["global_step"]),
                        )
                    bar.update(1)
                    step = state["global_step"]
                    if step % cfg.logging_steps == 0:
                        sync_loss()
                        bar.set_postfix(
                            loss=f"{state['loss_sum'] / max(state['loss_count'], 1):.4f}",
                            refresh=False,
                        )
                    if cfg.eval_steps and step % cfg.eval_steps == 0:
                        sync_loss()
                        best_state = self._evaluate_and_select(
                            model,
                            state,
                            metric,
                            greater,
                            eval_features,
                            eval_records,
                            best_state,
                            epoch=round(
                                epoch
                                + state["batch"]
                                / max(math.ceil(len(batches) / acc.num_processes), 1),
                                2,
                            ),
                            train_loss=state["loss_sum"] / max(state["loss_count"], 1),
                            seconds=time.perf_counter() - epoch_time,
                        )
                        state["loss_sum"], state["loss_count"], epoch_time = (
                            0.0,
                            0,
                            time.perf_counter(),
                        )
                        running = _RunningLoss(0.0, acc.device)
                        model.train()
                        if state["stopped"]:
                            break
                    if cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0 and cfg.output_dir:
                        sync_loss()
                        self._checkpoint(model, optimizer, scheduler, state, best_state)
            if state["stopped"]:
                break
            sync_loss()
            state["epoch"] += 1
            state["batch"] = 0
            row_seconds = time.perf_counter() - epoch_time
            best_state = self._evaluate_and_select(
                model,
                state,
                metric,
                greater,
                eval_features,
                eval_records,
                best_state,
                epoch=state["epoch"],
                train_loss=state["loss_sum"] / state["loss_count"] if state["loss_count"] else None,
                seconds=row_seconds,
            )
            state["loss_sum"], state["loss_count"], epoch_time = 0.0, 0, time.perf_counter()
            running = _RunningLoss(0.0, acc.device)
            if cfg.output_dir:
                self._checkpoint(model, optimizer, scheduler, state, best_state)
        bar.close()
        self.history.info["train_seconds"] = round(time.perf_counter() - start_time, 3)
        self.history.info["nan_skips"] = self.nan_skips
        if has_eval and best_state is not None:
            self.history.info["best_metric"] = {metric: state["best"]}
            unwrapped = acc.unwrap_model(model)
            unwrapped.load_state_dict(best_state, strict=False)
        acc.wait_for_everyone()
        self.model = acc.unwrap_model(model)
        self.model.eval()
        return self.history

    def _evaluate_and_select(
        self,
        model,
        state,
        metric,
        greater,
        eval_features,
        eval_records,
        best_state,
        *,
        epoch,
        train_loss,
        seconds,
    ):
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": state["global_step"],
            "train_loss": train_loss,
        }
        if eval_features:
            metrics, _ = self.evaluate(eval_features, eval_records or [], model=model)
            row.update(metrics)
            value = metrics.get(metric)
            if value is None:
                raise ConfigError(
                    f"metric_for_best={metric!r} is not computed by task {self.task.name!r}; "
                    f"choose one of {', '.join(sorted(metrics))}"
                )
            improved = state["best"] is None or (
                value > state["best"] if greater else value < state["best"]
            )
            if improved:
                state["best"], state["bad_evals"] = value, 0
                unwrapped = self.accelerator.unwrap_model(model)
                trained = {n for n, p in unwrapped.named_parameters() if p.requires_grad}
                best_state = {
                    k: v.detach().cpu().clone()
                    for k, v in unwrapped.state_dict().items()
                    if k in trained
                }
            else:
                state["bad_evals"] += 1
                patience = self.config.early_stopping_patience
                if patience and state["bad_evals"] >= patience:
                    state["stopped"] = True
                    logger.info(
                        "early stopping: %s did not improve for %d evaluations", metric, patience
                    )
        row["seconds"] = round(seconds, 3)
        self.history.append(row)
        self._log(tracker_scalars(row), int(state["global_step"]))
        return best_state

    # ---- frozen-encoder feature cache ---------------------------------------------------
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
            autocast=self.accelerator.autocast,
            padding_side=getattr(self.tokenizer, "padding_side", "right") or "right",
            tag=f"{self.precision}",
        )

    def _compile(self, model, batch, features, index) -> None:
        """``torch.compile`` the model's forward in place (``compile=True`` or a backend
        name), checked by one compiled forward and backward on the first batch. If that
        fails (no compiler, an unsupported model or backend), a warning says why and the
        model trains eagerly. The check leaves no trace: gradients are cleared and the
        random state (dropout) is restored, so the run equals an uncompiled one."""
        import warnings

        module = self.accelerator.unwrap_model(model)
        backend = "inductor" if self.config.compile is True else str(self.config.compile)
        eager_forward = module.forward
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        try:
            # torch's default shape handling: the first shape compiles static, a second one
            # recompiles with dynamic lengths, which then serves every later batch
            module.forward = torch.compile(eager_forward, backend=backend)
            loss = self.task.loss(self._forward(model, dict(batch), features, index), batch)
            loss.backward()
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
        finally:
            module.zero_grad(set_to_none=True)
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
        self.history.info["compiled"] = module.forward is not eager_forward

    def _forward(self, model, batch, features, index):
        """``model(batch)``, or the trainable part on cached encoder features."""
        cache = getattr(self, "feature_cache", None)
        if cache is None or index is None:
            return model(batch)
        return model(batch, features=cache.batch(features, index, batch))

    # ---- evaluation / prediction --------------------------------------------------------
    @torch.no_grad()
    def outputs(
        self, features: Sequence[Feature], *, model=None
    ) -> tuple[list[dict[str, np.ndarray]], float | None]:
        """Per-feature outputs (``task.batch_outputs``), in feature order, and the mean loss
        when the features carry labels. Each feature is counted once across processes."""
        acc = self.accelerator
        model = model if model is not None else acc.prepare(self.model)
        was_training = model.training
        model.eval()
        bs = self.config.eval_batch_size or self.config.batch_size * 2
        batches = make_batches(
            [feature_length(f) for f in features], batch_size=bs, seed=0, epoch=0, shuffle=False
        )
        # Uneven shards: no sample is duplicated to even out batches, so the loss and the
        # gathered outputs count every feature exactly once.
        even, acc.even_batches = acc.even_batches, False
        try:
            loader = self._loader(features, batches)
        finally:
            acc.even_batches = even
        rows: list[tuple[int, dict[str, np.ndarray]]] = []
        loss_total, loss_n = 0.0, 0
        has_labels = bool(features) and "labels" in features[0]
        # Not through the DDP wrapper: its forward syncs buffers, a collective, and with
        # uneven shards one process would wait forever for the other. No gradients here.
        inner = acc.unwrap_model(model)
        for batch in loader:
            index = batch.pop("_index")
            outputs = self._forward(inner, batch, features, index)
            if has_labels:
                loss = self.task.loss(outputs, batch)
                loss_total += float(loss) * len(index)
                loss_n += len(index)
            kept = self.task.batch_outputs(outputs, batch)
            cpu = {
                k: v.detach().float().cpu().numpy()
                if v.is_floating_point()
                else v.detach().cpu().numpy()
                for k, v in kept.items()
            }
            rows += [
                (int(i), {k: v[j] for k, v in cpu.items()}) for j, i in enumerate(index.tolist())
            ]
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            rows = gather_object(rows)
            totals = (
                acc.gather(torch.tensor([loss_total, float(loss_n)], device=acc.device))
                .view(-1, 2)
                .sum(0)
            )
            loss_total, loss_n = float(totals[0]), int(totals[1])
        by_index: dict[int, dict[str, np.ndarray]] = {}
        for i, out in rows:
            by_index.setdefault(i, out)  # padding duplicates of even batches are dropped
        if was_training:
            model.train()
        ordered = [by_index[i] for i in range(len(features))]
        mean_loss = loss_total / loss_n if loss_n else None
        return ordered, mean_loss

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

    # ---- checkpoints --------------------------------------------------------------------
    def _checkpoint_root(self) -> Path:
        return Path(self.config.output_dir or ".") / CHECKPOINTS_DIR

    def _checkpoint(self, model, optimizer, scheduler, state, best_state) -> None:
        from safetensors.torch import save_file, save_model

        acc = self.accelerator
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return
        root = self._checkpoint_root()
        name = f"checkpoint-{state['global_step']:08d}"
        unwrapped = acc.unwrap_model(model)
        with atomic_directory(root / name) as tmp:
            save_model(unwrapped, str(tmp / "model.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
            if best_state:
                save_file(
                    {k: v.contiguous() for k, v in best_state.items()},
                    str(tmp / "best.safetensors"),
                )
            np_state = np.random.get_state()
            (tmp / "state.json").write_text(
                json.dumps(
                    {
                        "state": state,
                        "history": self.history.rows,
                        "info": self.history.info,
                        "training": config_to_dict(self.config),
                        "python_rng": _jsonable(random.getstate()),
                        "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                        "nan_skips": self.nan_skips,
                    }
                )
            )
        for old in sorted(p for p in root.glob("checkpoint-*") if p.is_dir())[
            : -self.config.keep_checkpoints
        ]:
            shutil.rmtree(old, ignore_errors=True)
        # what a killed process was writing: never read, cleared once a newer one is whole
        for stale in root.glob(".checkpoint-*.partial"):
            shutil.rmtree(stale, ignore_errors=True)

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self._checkpoint_root())

    def _restore(self, model, optimizer, scheduler):
        from safetensors.torch import load_file, load_model

        path = self.latest_checkpoint()
        if path is None:
            logger.info(
                "resume=True but no checkpoint in %s; starting from scratch",
                self._checkpoint_root(),
            )
            return None
        logger.info("resuming from %s", path)
        load_model(
            self.accelerator.unwrap_model(model), str(path / "model.safetensors"), strict=True
        )
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
        saved = json.loads((path / "state.json").read_text())
        random.setstate(_tupled(saved["python_rng"]))
        np_rng = saved["numpy_rng"]
        np.random.set_state((np_rng[0], np.array(np_rng[1], dtype=np.uint32), *np_rng[2:]))
        self.history.rows = saved["history"]
        self.history.info.update(saved["info"])
        self.nan_skips = saved.get("nan_skips", 0)
        best = (
            load_file(str(path / "best.safetensors"))
            if (path / "best.safetensors").exists()
            else None
        )
        return saved["state"], best


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


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return [_jsonable(x) for x in obj]
    return obj


def _tupled(obj: Any) -> Any:
    if isinstance(obj, list):
        return tuple(_tupled(x) for x in obj)
    return obj
