"""Heads: the trainable layer(s) a task puts on top of the encoder.

A :class:`Head` reads the encoder's hidden states ``[batch, tokens, hidden]`` (after the
strategy's representation, e.g. a learned layer mix) and the batch, and returns a dict of
output tensors (``logits``, ``start_logits``...). A head is always saved with the model,
whatever the strategy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from .hookspecs import hookimpl

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


#: what a head reads and predicts: one output per text (``sequence``: pooled
#: classifiers, regression, embeddings), per token (``token``: tagging, CRF), a start/end
#: span (``span``: extractive QA), or a vocabulary distribution per position (``lm``)
HEAD_LEVELS = ("sequence", "token", "span", "lm")


class Head(nn.Module):
    """Base class of heads. Subclasses set ``name`` and ``level`` and implement :meth:`forward`.

    Heads are registered through the ``tunekit_register_heads`` hook so that tasks can
    offer ``head="mlp"``-style options and plugins can add their own. ``level`` (one of
    :data:`HEAD_LEVELS`) says what the head predicts; a task lists the levels it accepts in
    ``Task.head_levels``, and asking a task for a head of another level is an error
    (``classify`` refuses ``head="crf"``). Registering a head without a valid level is a
    :class:`~tunekit.errors.PluginError`.

    Example::

        class MaxHead(Head):
            name, level = "max-linear", "sequence"
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    level: ClassVar[str] = ""

    @property
    def first_token_only(self) -> bool:
        """Whether the head reads the first token's hidden state alone (``[CLS]`` pooling).
        Then the encoder's last layer runs for that token only and ``hidden`` is
        ``[batch, 1, hidden]`` (:mod:`tunekit.first_token`); the default, ``False``, is
        always safe. A head that says ``True`` must read nothing but ``hidden[:, 0]``."""
        return False

    def forward(
        self, hidden: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """Reduce ``[batch, tokens, hidden]`` to ``[batch, hidden]`` by ``cls``, ``mean`` or ``max``."""
    if how == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if how == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if how == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(1).values
    raise ValueError(f"unknown pooling {how!r}; use 'cls', 'mean' or 'max'")


class MLPHead(Head):
    """Pooled sequence representation → (hidden layers →) ``num_outputs`` logits.

    With ``hidden=(512,)`` this is the classic feature-extraction head
    ``768→512→ReLU→dropout→classes``; with ``hidden=()`` it is a linear classifier.

    Example::

        head = MLPHead(384, 2, hidden=(512,), dropout=0.1, pooling="mean")
        head(torch.randn(4, 7, 384), {"attention_mask": torch.ones(4, 7)})["logits"].shape
        # torch.Size([4, 2])
    """

    name = "mlp"
    level = "sequence"

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        *,
        hidden: Sequence[int] = (512,),
        dropout: float = 0.1,
        activation: str = "relu",
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}"
            )
        self.pooling = pooling
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    @property
    def first_token_only(self) -> bool:
        return self.pooling == "cls"

    def forward(
        self, hidden: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        pooled = pool(hidden, batch.get("attention_mask"), self.pooling)
        return {"logits": self.net(pooled)}


class LinearHead(MLPHead):
    """:class:`MLPHead` with no hidden layer: dropout → linear."""

    name = "linear"

    def __init__(self, in_features: int, num_outputs: int, **options) -> None:
        options["hidden"] = ()
        super().__init__(in_features, num_outputs, **options)


# Built-in plugin: the core heads register through the same hook as a plugin's.
@hookimpl
def tunekit_register_heads(register):
    register(LinearHead)
    register(MLPHead)
