"""``top-k``: only the last k encoder layers (and the head) train."""

from __future__ import annotations

import attrs

from ..config import _positive
from ..errors import ConfigError
from ..strategy import Strategy
from ..taskmodel import TaskModel
from .layers import layer_of, num_layers


@attrs.frozen(kw_only=True)
class TopKConfig:
    """Options of ``top-k``.

    - ``k`` (default 2): how many of the last encoder layers train; must be at most the
      model's layer count. Embeddings, lower layers and the (unused) pooler stay frozen.
    """

    k: int = attrs.field(default=2, validator=_positive)


class TopKStrategy(Strategy):
    """Unfreeze the last ``k`` transformer layers; bundles hold those layers and the head,
    plus the base model's identity and weights hash.

    Example::

        tunekit.finetune(task="classify", data=rows, strategy="top-k", k=2)
    """

    name = "top-k"
    aliases = ("topk", "top_k", "last-k")
    description = "only the last k encoder layers and the head train (k=)"
    Config = TopKConfig

    def apply(self, model: TaskModel) -> None:
        layers = num_layers(model.encoder)
        k = self.config.k
        if k > layers:
            raise ConfigError(
                f"k={k} is larger than the model's {layers} layers; use k<={layers} (k={layers} trains "
                f"every layer but the embeddings; strategy='full' trains everything)"
            )
        first = layers - k
        for name, param in model.encoder.named_parameters():
            index = layer_of(name)
            param.requires_grad_(index is not None and index >= first)
        for module in (model.head, model.representation):
            for param in module.parameters():
                param.requires_grad_(True)

    @property
    def stores_encoder(self) -> bool:
        return False
