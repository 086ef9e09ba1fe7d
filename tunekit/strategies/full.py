"""``full``: every parameter of encoder and head trains."""

from __future__ import annotations

import attrs

from ..strategy import Strategy
from ..taskmodel import TaskModel


@attrs.frozen(kw_only=True)
class FullConfig:
    """Options of the ``full`` strategy (none yet; layer-wise lr decay is planned)."""


class FullStrategy(Strategy):
    """Full fine-tuning: the whole encoder and the head learn.

    Example::

        tunekit.finetune(task="classify", data="reviews.csv", strategy="full")
    """

    name = "full"
    aliases = ("finetune", "full-finetune")
    description = "every parameter trains (highest accuracy, largest bundle)"
    Config = FullConfig

    def apply(self, model: TaskModel) -> None:
        for param in model.parameters():
            param.requires_grad_(True)
