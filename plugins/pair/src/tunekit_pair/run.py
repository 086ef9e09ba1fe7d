"""``PairRun``: a :class:`tunekit.Run` that, for a bi-encoder, also embeds and compares texts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tunekit.plugin import (
    ConfigError,
    DataError,
    Run,
    autocast_for,
    embedding_similarity,
    map_batches,
)


class PairRun(Run):
    """The run of a pair task. With ``architecture="bi-encoder"`` it adds
    :meth:`encode` (text embeddings) and :meth:`similarity` (cosine of two texts'
    embeddings), e.g. for retrieval or as the topics plugin's embedder.

    Example::

        run = tunekit.finetune(task="pair-sim", data=pairs, architecture="bi-encoder")
        vectors = run.encode(["how old are you", "what is your age"])   # [2, hidden]
        run.similarity("how old are you", "what is your age")          # 0.93
    """

    def _require_bi_encoder(self, what: str) -> Any:
        head = self.model.head
        if not hasattr(head, "embed"):
            raise ConfigError(
                f"run.{what}() needs a bi-encoder, but this {self.task.name!r} model is a cross-encoder (it reads "
                f"both texts together and has no per-text embedding). Use run.predict(pairs) for pair scores, or "
                f"train with architecture='bi-encoder'."
            )
        return head

    def encode(
        self, texts: str | Sequence[str], *, batch_size: int | None = None, normalize: bool = True
    ) -> np.ndarray:
        """Embeddings ``[len(texts), width]`` (float32; unit length when *normalize*); a
        single string gives one vector ``[width]``."""
        head = self._require_bi_encoder("encode")
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"encode input {i} is empty or not a string ({text!r})")
        model = self.model
        device = next(model.parameters()).device
        enc = self.tokenizer(texts, truncation=True, max_length=self.training.max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        features = [{k: enc[k][i] for k in keys} for i in range(len(texts))]

        def embed(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            vectors = head.embed(model.hidden_states(batch), batch.get("attention_mask")).float()
            return {"embedding": F.normalize(vectors, dim=-1) if normalize else vectors}

        rows = map_batches(
            model,
            features,
            embed,
            collate=lambda fs: dict(self.tokenizer.pad(fs, return_tensors="pt")),
            batch_size=batch_size or self.training.eval_batch_size or 2 * self.training.batch_size,
            context=lambda: autocast_for(device, self.precision),
            keep=lambda feature, row: row["embedding"].numpy(),
        )
        out = np.stack(rows)
        return out[0] if single else out

    def similarity(
        self, a: str | Sequence[str], b: str | Sequence[str], *, batch_size: int | None = None
    ) -> Any:
        """Cosine similarity of the embeddings of *a* and *b*: two strings give a float, two
        equally long lists give one value per position (an array)."""
        self._require_bi_encoder("similarity")
        return embedding_similarity(self.encode, a, b, batch_size=batch_size)
