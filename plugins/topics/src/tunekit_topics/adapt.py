"""Encoder adaptation before topic modeling, through tunekit's shared Trainer.

- ``adapt="simcse"``: unsupervised SimCSE (Gao et al., 2021). Each document is encoded
  twice with dropout on; the two mean-pooled embeddings are positives, the other
  documents of the batch negatives, under an InfoNCE loss at temperature
  ``simcse_temperature``. This pulls the corpus' documents apart in embedding space in
  the directions that distinguish them, which is what clustering needs.
- ``adapt="mlm"``: masked-LM fine-tuning on the documents with the ``fill-mask`` task of
  the ``tunekit-fill-mask`` plugin.

Both train with the user's ``strategy`` (``full``, ``lora``, ``top-k``...) and training
options (``epochs``, ``learning_rate``, ``batch_size``, ``max_length``, ``seed``); the
adapted encoder then embeds the documents, and the topic run keeps that strategy, so a
``lora`` bundle stores only the adapter and re-attaches to the base model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
import torch.nn.functional as F

from tunekit.plugin import (
    Backbone,
    ConfigError,
    Feature,
    Head,
    History,
    Record,
    Strategy,
    Task,
    TrainingConfig,
    UnknownNameError,
    default_collate,
    pool,
)


class PooledHead(Head):
    """Mean-pooled embedding, nothing trainable (SimCSE trains the encoder itself)."""

    name = "pooled"
    level = "sequence"

    def forward(
        self, hidden: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"embedding": pool(hidden, batch.get("attention_mask"), "mean")}


@attrs.frozen(kw_only=True)
class SimCSEConfig:
    """``temperature`` of the InfoNCE loss (0.05 in the SimCSE paper)."""

    temperature: float = 0.05


class SimCSETask(Task):
    """Unsupervised SimCSE as a tunekit task (not registered: the topics task runs it).

    ===========  ===================================================================
    input        documents ``{"text": ...}``
    training     each batch holds every document twice; dropout makes two views
    loss         cross-entropy of view-1 × view-2 cosine similarities / temperature,
                 the matching document as the target
    ===========  ===================================================================

    Example::

        trainer, run = build_run(SimCSETask(), FullStrategy(), backbone, TrainingConfig(eval_split=0))
    """

    name = "simcse"
    Config = SimCSEConfig
    cacheable_inputs = False

    def encode(
        self, records: Sequence[Record], tokenizer: Any, *, max_length: int, with_labels: bool
    ) -> list[Feature]:
        enc = tokenizer([r["text"] for r in records], truncation=True, max_length=max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        return [{**{k: enc[k][i] for k in keys}, "example_index": i} for i in range(len(records))]

    def collate_train(self, features: Sequence[Feature], tokenizer: Any) -> dict[str, torch.Tensor]:
        """The batch twice over: rows ``i`` and ``i + B`` are the same document."""
        return default_collate([*features, *features], tokenizer)

    def build_head(self, backbone: Backbone) -> Head:
        return PooledHead()

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        emb = F.normalize(outputs["embedding"].float(), dim=-1)
        half = emb.shape[0] // 2
        if half < 2:  # a one-document batch has no negatives; contributes nothing
            return emb.sum() * 0.0
        logits = emb[:half] @ emb[half:].T / self.config.temperature
        return F.cross_entropy(logits, torch.arange(half, device=logits.device))


ADAPT_METHODS = ("simcse", "mlm")


def adapt_encoder(
    method: str,
    backbone: Backbone,
    texts: Sequence[str],
    *,
    strategy: Strategy,
    training: TrainingConfig,
    temperature: float,
) -> tuple[Any, History]:
    """Fine-tune *backbone*'s encoder on *texts* with *method*; returns the trained
    :class:`~tunekit.plugin.TaskModel` (encoder as the strategy left it: adapters
    attached, layer mix installed; eval mode) and the training history."""
    from tunekit.plugin import build_run, get_task

    if strategy.name == "frozen":
        raise ConfigError(
            f"adapt={method!r} trains the encoder, but strategy='frozen' freezes it; use strategy='full', 'lora' or 'top-k'"
        )
    if method == "mlm":
        try:
            task: Task = get_task("fill-mask")()
        except UnknownNameError as exc:
            raise ConfigError(
                "adapt='mlm' needs the fill-mask task, which is not installed: pip install tunekit-fill-mask "
                "(or use adapt='simcse', which needs nothing more)"
            ) from exc
    else:
        task = SimCSETask(SimCSEConfig(temperature=temperature))
    records = [{"text": t} for t in texts]
    task.setup(records)
    config = attrs.evolve(
        training, eval_split=0.0, output_dir=None, resume=False, early_stopping_patience=None
    )
    trainer, _ = build_run(task, strategy, backbone, config)
    features = task.encode(
        records, backbone.tokenizer, max_length=config.max_length, with_labels=True
    )
    history = trainer.fit(features, [], [])
    for row in history.rows:
        row["stage"] = f"adapt-{method}"
    return trainer.model.eval(), history
