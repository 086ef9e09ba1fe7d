"""``full``: every parameter of encoder and head trains (optionally with layer-wise lr decay)."""

from __future__ import annotations

from typing import Any

import attrs
from torch import nn

from ..errors import ConfigError
from ..strategy import NO_DECAY, Strategy
from ..taskmodel import TaskModel
from .layers import is_embedding, layer_of, num_layers


def _decay_factor(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not 0 < value <= 1:
        raise ConfigError(
            f"option lr_decay={value!r} must be in (0, 1] (e.g. 0.9), or None for no decay"
        )


@attrs.frozen(kw_only=True)
class FullConfig:
    """Options of the ``full`` strategy.

    - ``lr_decay``: layer-wise learning-rate decay. The head (and anything above the last
      layer) trains at ``learning_rate``, the last encoder layer at ``learning_rate *
      lr_decay``, the one below at ``* lr_decay**2`` ... and the embeddings at
      ``* lr_decay**(layers + 1)``. ``None`` (default): one rate for all.
    """

    lr_decay: float | None = attrs.field(default=None, validator=_decay_factor)


class FullStrategy(Strategy):
    """Full fine-tuning: the whole encoder and the head learn.

    Example::

        tunekit.finetune(task="classify", data="reviews.csv", strategy="full", lr_decay=0.9)
    """

    name = "full"
    aliases = ("finetune", "full-finetune")
    description = (
        "every parameter trains (highest accuracy, largest bundle); lr_decay= for layer-wise decay"
    )
    Config = FullConfig

    def apply(self, model: TaskModel) -> None:
        for param in model.parameters():
            param.requires_grad_(True)

    def parameter_groups(
        self, model: nn.Module, *, learning_rate: float, weight_decay: float
    ) -> list[dict[str, Any]]:
        decay = self.config.lr_decay
        if decay is None or decay == 1:
            return super().parameter_groups(
                model, learning_rate=learning_rate, weight_decay=weight_decay
            )
        encoder = (
            model.encoder
            if isinstance(model, TaskModel)
            else getattr(model, "module", model).encoder
        )
        layers = num_layers(encoder)
        groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            depth = layers + 1  # head, representation, pooler: the full rate
            if name.startswith("encoder."):
                index = layer_of(name)
                if index is not None:
                    depth = index + 1
                elif is_embedding(name):
                    depth = 0
            rate = learning_rate * decay ** (layers + 1 - depth)
            groups.setdefault((rate, name.endswith(NO_DECAY)), []).append(param)
        return [
            {"params": params, "lr": rate, "weight_decay": 0.0 if no_decay else weight_decay}
            for (rate, no_decay), params in sorted(groups.items(), key=lambda kv: kv[0])
        ]
