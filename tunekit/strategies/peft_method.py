"""``peft``: other peft methods by name (``ia3``, ``adalora``, ``prefix``)."""

from __future__ import annotations

from typing import Any

import attrs
from torch import nn

from ..config import _one_of, _positive
from .adapters import IA3_TARGETS, LORA_TARGETS, AdapterStrategy, check_targets, default_targets
from .lora import _targets

METHODS = ("ia3", "adalora", "prefix")


@attrs.frozen(kw_only=True)
class PeftConfig:
    """Options of ``peft``.

    - ``method``: ``ia3`` (learned rescaling vectors, the smallest), ``adalora`` (LoRA whose
      rank budget is re-allocated during training; ``r`` is the target average rank,
      ``init_r`` the starting one) or ``prefix`` (prefix tuning: ``num_virtual_tokens``
      learned key/value vectors per layer; cannot be merged).
    - ``target_modules``: as for ``lora`` (``ia3`` / ``adalora``); chosen from the model type by default.
    - ``merge``: write merged bundles (``ia3``, ``adalora``), as ``run.save(dir, merged=True)``.
    """

    method: str = attrs.field(default="ia3", validator=_one_of(*METHODS))
    target_modules: str | tuple[str, ...] | None = attrs.field(default=None, converter=_targets)
    r: int = attrs.field(default=8, validator=_positive)
    init_r: int = attrs.field(default=12, validator=_positive)
    num_virtual_tokens: int = attrs.field(default=16, validator=_positive)
    merge: bool = False


class PeftStrategy(AdapterStrategy):
    """Any other peft method by name, with the same guarantees as ``lora``: the head always
    trains and is saved with the adapter; bundles re-attach to the base model.

    Example::

        tunekit.finetune(task="classify", data=rows, strategy="peft", method="ia3")
    """

    name = "peft"
    aliases = ("adapter",)
    description = "another peft method by name: method='ia3' | 'adalora' | 'prefix'"
    Config = PeftConfig

    @property
    def mergeable(self) -> bool:  # type: ignore[override]
        return self.config.method != "prefix"

    def peft_config(self, encoder: nn.Module) -> Any:
        import peft

        cfg = self.config
        task_type = peft.TaskType.FEATURE_EXTRACTION
        if cfg.method == "prefix":
            return peft.PrefixTuningConfig(
                num_virtual_tokens=cfg.num_virtual_tokens, task_type=task_type
            )
        if cfg.method == "ia3":
            if cfg.target_modules is not None:
                targets, feedforward = cfg.target_modules, []
            else:
                targets, feedforward = default_targets(encoder, IA3_TARGETS, "_none_")
            check_targets(encoder, targets)
            return peft.IA3Config(
                target_modules=list(targets) if not isinstance(targets, str) else targets,
                feedforward_modules=list(feedforward),
                task_type=task_type,
            )
        targets = cfg.target_modules or default_targets(
            encoder, LORA_TARGETS, "TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING"
        )
        check_targets(encoder, targets)
        # total_step is a placeholder until the trainer knows the schedule (on_train_begin)
        return peft.AdaLoraConfig(
            init_r=max(cfg.init_r, cfg.r),
            target_r=cfg.r,
            target_modules=list(targets) if not isinstance(targets, str) else targets,
            total_step=1000,
            task_type=task_type,
        )

    def _adalora(self, model: nn.Module) -> Any:
        if self.config.method != "adalora":
            return None
        encoder = getattr(model, "module", model).encoder
        return encoder.base_model

    def resume_blocker(self) -> str | None:
        if self.config.method == "adalora":
            return (
                "peft method='adalora' keeps a rank allocator (importance scores, their running"
                " averages) that checkpoints do not hold, so a resumed run would differ"
            )
        return None

    def on_train_begin(self, model: nn.Module, *, total_steps: int) -> None:
        adalora = self._adalora(model)
        if adalora is not None:
            config = adalora.peft_config[adalora.trainable_adapter_name]
            config.total_step = max(int(total_steps), 1)
            # allocate ranks over the middle of training: warm up first, settle at the end
            config.tinit = int(0.1 * total_steps)
            config.tfinal = int(0.2 * total_steps)
            config.deltaT = max(1, total_steps // 20)

    def after_optimizer_step(self, model: nn.Module, *, global_step: int) -> None:
        adalora = self._adalora(model)
        if adalora is not None:
            adalora.update_and_allocate(global_step)
