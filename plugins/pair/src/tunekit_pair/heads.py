"""The bi-encoder head: a siamese reading of a batch that holds both sides of every pair.

A bi-encoder batch stacks the first texts of ``B`` pairs on top of their second texts
(``input_ids`` is ``[2B, tokens]``), so the encoder, the strategy's representation and a
frozen encoder's handling stay exactly those of any other task; this head splits the
hidden states back into the two sides.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from tunekit.plugin import Head, pool


class BiEncoderHead(Head):
    """Mean-pooled embeddings ``u``, ``v`` of both sides → ``similarity = cos(u, v)``.

    With ``projection=n`` a dense ``hidden → n`` layer (tanh) maps the pooled embeddings
    first (Sentence-BERT's ``Dense`` module): it is what learns when the encoder is frozen.

    Outputs (batch first, ``B`` pairs):

    ===============  ==========  =====================================================
    key              shape       what
    ===============  ==========  =====================================================
    ``similarity``   ``[B]``     cosine similarity of the two embeddings
    ``logits``       ``[B, K]``  pair-cls only: a linear classifier on ``(u, v, |u-v|)``
                                 (Sentence-BERT's softmax objective)
    ===============  ==========  =====================================================

    Example::

        head = BiEncoderHead(384, pooling="mean")
        out = head(torch.randn(8, 7, 384), {"attention_mask": torch.ones(8, 7)})
        out["similarity"].shape   # torch.Size([4])
    """

    name = "bi-encoder"
    level = "sequence"

    def __init__(
        self,
        in_features: int,
        *,
        num_classes: int = 0,
        pooling: str = "mean",
        projection: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.projection = (
            nn.Sequential(nn.Linear(in_features, projection), nn.Tanh()) if projection else None
        )
        width = projection or in_features
        self.classifier = (
            nn.Sequential(nn.Dropout(dropout), nn.Linear(3 * width, num_classes))
            if num_classes
            else None
        )

    def embed(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Pooled (and projected) ``[n, width]`` embeddings of ``[n, tokens, hidden]`` states."""
        pooled = pool(hidden, attention_mask, self.pooling)
        return self.projection(pooled) if self.projection is not None else pooled

    def forward(
        self, hidden: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        embeddings = self.embed(hidden, batch.get("attention_mask")).float()
        half = embeddings.shape[0] // 2
        u, v = embeddings[:half], embeddings[half:]
        similarity = F.cosine_similarity(u, v, dim=-1)
        outputs = {"similarity": similarity}
        if self.classifier is not None:
            outputs["logits"] = self.classifier(torch.cat([u, v, (u - v).abs()], dim=-1))
        return outputs
