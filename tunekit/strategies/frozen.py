"""``frozen``: feature extraction — the encoder is frozen, only the head trains."""

from __future__ import annotations

import os
from typing import Any

import attrs

from ..strategy import Strategy
from ..taskmodel import TaskModel


def _optional_path(value: Any) -> str | None:
    return None if value is None else os.fspath(value)


def freeze_encoder(model: TaskModel) -> None:
    """Freeze the encoder; head and representation train. The encoder stays in eval mode
    during training (no dropout), so its outputs are a fixed function of the input."""
    for param in model.encoder.parameters():
        param.requires_grad_(False)
    for module in (model.head, model.representation):
        for param in module.parameters():
            param.requires_grad_(True)
    model.encoder_eval = True


@attrs.frozen(kw_only=True)
class FrozenConfig:
    """Options of the ``frozen`` strategy.

    - ``cache_features`` (default ``True``): run the encoder once per training / evaluation
      feature and reuse its hidden states every epoch; the loss curve equals uncached
      training up to float rounding.
    - ``cache_dir``: also keep the cached features on disk there, keyed by the base model's
      weights hash and the token ids (so text, tokenizer and ``max_length``); a second run on
      the same data skips the encoder entirely. ``None``: memory only.

    The head itself is a task option: ``head="linear"`` or ``head="mlp"`` with
    ``hidden=[512]``, ``dropout=``, ``activation=``.
    """

    cache_features: bool = True
    cache_dir: str | None = attrs.field(default=None, converter=_optional_path)


class FrozenStrategy(Strategy):
    """Frozen encoder, trained head (feature extraction). Bundles hold only the head plus
    the base model's identity and weights hash.

    Example::

        tunekit.finetune(task="classify", data=rows, strategy="frozen", head="mlp", hidden=[512])
    """

    name = "frozen"
    aliases = ("feature-extraction", "features", "linear-probe")
    description = (
        "encoder frozen, only the head trains; encoder outputs cached once (fast, small bundle)"
    )
    Config = FrozenConfig

    def apply(self, model: TaskModel) -> None:
        freeze_encoder(model)

    @property
    def stores_encoder(self) -> bool:
        return False

    @property
    def cache_features(self) -> bool:
        return bool(self.config.cache_features)

    @property
    def cache_dir(self) -> str | None:
        return self.config.cache_dir
