"""``layer-mix``: the head reads a learned softmax-weighted sum of all hidden layers."""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from ..strategy import Strategy
from ..taskmodel import TaskModel
from .frozen import freeze_encoder
from .layers import num_layers


class ScalarMix(nn.Module):
    """``gamma * sum_l softmax(w)_l * h_l`` over the embedding output and every layer
    (ELMo's scalar mix). Starts as the plain average (``w = 0``, ``gamma = 1``).

    Example::

        mix = ScalarMix(7)
        mix.combine(torch.randn(2, 7, 5, 384)).shape   # torch.Size([2, 5, 384])
    """

    needs_all_layers = True

    def __init__(self, num_states: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_states))
        self.gamma = nn.Parameter(torch.ones(()))

    def features(self, encoder_outputs: Any) -> torch.Tensor:
        """``[batch, layers + 1, tokens, hidden]``: every hidden state, stacked."""
        return torch.stack(tuple(encoder_outputs.hidden_states), dim=1)

    def combine(self, features: torch.Tensor) -> torch.Tensor:
        mix = torch.softmax(self.weights, dim=0).to(features.dtype)
        return self.gamma.to(features.dtype) * torch.einsum("l,bltd->btd", mix, features)

    def forward(self, encoder_outputs: Any) -> torch.Tensor:
        return self.combine(self.features(encoder_outputs))

    def layer_weights(self) -> list[float]:
        """The softmax-normalised weight of each state (index 0: the embeddings)."""
        return [float(w) for w in torch.softmax(self.weights.detach().float(), dim=0)]


@attrs.frozen(kw_only=True)
class LayerMixConfig:
    """Options of ``layer-mix``.

    - ``train_encoder`` (default ``False``): also fine-tune the encoder (the bundle then
      stores it whole).
    - ``cache_features`` (default ``False``): with a frozen encoder, compute every layer's
      hidden states once and reuse them; fast, but holds ``layers + 1`` times the memory of
      the ``frozen`` cache.
    """

    train_encoder: bool = False
    cache_features: bool = False


class LayerMixStrategy(Strategy):
    """Learned scalar mix of all hidden layers feeding the head; the learned weights are
    ``run.layer_weights`` and drawn by ``run.plot()``.

    Example::

        run = tunekit.finetune(task="classify", data=rows, strategy="layer-mix")
        run.layer_weights    # [0.08, 0.11, ..., 0.23]: embeddings, layer 1, ..., layer 6
    """

    name = "layer-mix"
    aliases = ("layermix", "scalar-mix", "layer_mix")
    description = (
        "the head reads a learned softmax-weighted sum of all layers (encoder frozen by default)"
    )
    Config = LayerMixConfig

    def apply(self, model: TaskModel) -> None:
        if not isinstance(model.representation, ScalarMix):
            model.representation = ScalarMix(num_layers(model.encoder) + 1)
        if self.config.train_encoder:
            for param in model.parameters():
                param.requires_grad_(True)
            model.encoder_eval = False
        else:
            freeze_encoder(model)

    @property
    def stores_encoder(self) -> bool:
        return bool(self.config.train_encoder)

    @property
    def cache_features(self) -> bool:
        return bool(self.config.cache_features) and not self.config.train_encoder
