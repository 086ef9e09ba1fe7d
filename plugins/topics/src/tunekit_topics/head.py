"""The topic head: mean pooling plus the fitted topic model's tensors as buffers.

Keeping the topic model in the head means a bundle stores it with the model (in
``model.safetensors``, hashed by the manifest) and ``tunekit.load()`` rebuilds it the way
it rebuilds any head; prediction goes through tunekit's ordinary inference path.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from tunekit.plugin import Head, pool


class TopicHead(Head):
    """Mean-pooled document embedding and its cosine similarity to every topic.

    Buffers (shapes fixed by the task's saved state so that load can rebuild them):
    ``topic_embeddings [topics, hidden]``, ``ctfidf [topic rows, vocabulary]``,
    ``doc_topics`` / ``doc_probabilities`` / ``doc_coords`` of the fitted documents, and the
    PCA projections of the clustering reducer (``reducer_*``) and of the 2D map (``map_*``).

    Example::

        head = TopicHead(384, n_topics=3, n_rows=4, vocab_size=100, n_docs=50)
        head(torch.randn(2, 7, 384), {"attention_mask": torch.ones(2, 7)})["similarity"].shape
        # torch.Size([2, 3])
    """

    name = "topics"
    level = "sequence"

    def __init__(
        self,
        hidden_size: int,
        *,
        n_topics: int = 0,
        n_rows: int = 0,
        vocab_size: int = 0,
        n_docs: int = 0,
        reducer_dims: int = 0,
        map_dims: int = 0,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.register_buffer("topic_embeddings", torch.zeros(n_topics, hidden_size))
        self.register_buffer("ctfidf", torch.zeros(n_rows, vocab_size))
        self.register_buffer("doc_topics", torch.zeros(n_docs, dtype=torch.long))
        self.register_buffer("doc_probabilities", torch.zeros(n_docs))
        self.register_buffer("doc_coords", torch.zeros(n_docs, 2))
        self.register_buffer("reducer_mean", torch.zeros(hidden_size if reducer_dims else 0))
        self.register_buffer("reducer_components", torch.zeros(reducer_dims, hidden_size))
        self.register_buffer("map_mean", torch.zeros(hidden_size if map_dims else 0))
        self.register_buffer("map_components", torch.zeros(map_dims, hidden_size))

    def forward(
        self, hidden: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        pooled = pool(hidden, batch.get("attention_mask"), self.pooling).float()
        unit = F.normalize(pooled, dim=-1)
        return {"embedding": pooled, "similarity": unit @ self.topic_embeddings.float().T}
