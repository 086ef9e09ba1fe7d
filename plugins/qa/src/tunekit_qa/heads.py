"""The span head: a start and an end logit for every token."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from tunekit.plugin import Head

#: the logit of padding positions (finite, so fp16 and the cross-entropy stay finite)
PADDING_LOGIT = -1e4


class SpanHead(Head):
    """Dropout → linear ``hidden → 2``: ``start_logits`` and ``end_logits`` ``[batch, tokens]``,
    the layout of transformers' ``*ForQuestionAnswering`` models. Padding positions get
    :data:`PADDING_LOGIT`, so a window's logits do not depend on how it was batched.

    Example::

        head = SpanHead(384)
        out = head(torch.randn(2, 9, 384), {"attention_mask": torch.ones(2, 9)})
        out["start_logits"].shape  # torch.Size([2, 9])
    """

    name = "span"
    level = "span"
    aliases = ("qa-span",)

    def __init__(self, in_features: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.qa_outputs = nn.Linear(in_features, 2)

    def forward(
        self, hidden: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        logits = self.qa_outputs(self.dropout(hidden))
        start, end = logits.unbind(-1)
        mask = batch.get("attention_mask")
        if mask is not None:
            pad = mask[:, : start.shape[1]] == 0
            start = start.masked_fill(pad, PADDING_LOGIT)
            end = end.masked_fill(pad, PADDING_LOGIT)
        return {"start_logits": start, "end_logits": end}
