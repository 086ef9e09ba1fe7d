"""``lora``: low-rank adapters on the attention projections (through peft)."""

from __future__ import annotations

from typing import Any

import attrs
from torch import nn

from ..config import _positive
from ..errors import ConfigError
from .adapters import LORA_TARGETS, AdapterStrategy, check_targets, default_targets


def _targets(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return tuple(str(v) for v in value)


def _dropout(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0 <= value < 1:
        raise ConfigError(f"option {attribute.name}={value!r} must be in [0, 1)")


@attrs.frozen(kw_only=True)
class LoraConfig:
    """Options of ``lora``.

    - ``r`` (8): adapter rank; ``alpha`` (16): scaling numerator (scale ``alpha / r``);
      ``lora_dropout`` (0.1): dropout on the adapter input (``dropout`` is the head's).
    - ``target_modules``: which Linear layers get adapters; default chosen from the model
      type (``query``/``value`` for BERT, ERNIE, RoBERTa, XLM-R, MiniLM; ``q_lin``/``v_lin``
      for DistilBERT). A list of names (suffix match) or one regex. Matching nothing is an error.
    - ``merge`` (False): write bundles merged (adapter folded into the weights, verified to
      give the same outputs) — the same as ``run.save(dir, merged=True)``.
    """

    r: int = attrs.field(default=8, validator=_positive)
    alpha: float = attrs.field(default=16, validator=_positive)
    lora_dropout: float = attrs.field(default=0.1, validator=_dropout)
    target_modules: str | tuple[str, ...] | None = attrs.field(default=None, converter=_targets)
    merge: bool = False


class LoraStrategy(AdapterStrategy):
    """LoRA through peft: the encoder is frozen, rank-``r`` adapters learn, the head trains.
    Bundles hold adapter + head (a few hundred KB) and re-attach to the base model.

    Example::

        run = tunekit.finetune(task="classify", data=rows, strategy="lora", r=8, alpha=16)
        run.save("out/lora")                  # adapter + head + base identity
        run.save("out/merged", merged=True)   # standalone, adapter folded in
    """

    name = "lora"
    aliases = ("LoRA",)
    description = "low-rank adapters (peft) + head; tiny bundles that re-attach to the base model"
    Config = LoraConfig

    def peft_config(self, encoder: nn.Module) -> Any:
        from peft import LoraConfig as PeftLoraConfig
        from peft import TaskType

        targets = self.config.target_modules or default_targets(
            encoder, LORA_TARGETS, "TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING"
        )
        check_targets(encoder, targets)
        return PeftLoraConfig(
            r=self.config.r,
            lora_alpha=self.config.alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules=list(targets) if not isinstance(targets, str) else targets,
            bias="none",
            task_type=TaskType.FEATURE_EXTRACTION,
        )
