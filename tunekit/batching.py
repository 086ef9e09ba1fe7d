"""How features become batches: the seeded, length-grouped order of one epoch and the
collate step that remembers each feature's index."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from .task import Feature, Task


def make_batches(
    lengths: Sequence[int],
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    group_by_length: bool = True,
) -> list[list[int]]:
    """Index batches for one epoch: shuffled, then grouped by length inside mega-batches of
    50 batches so padding is small while the order stays random. Deterministic in
    (*seed*, *epoch*).

    Example::

        make_batches([5, 3, 9, 2], batch_size=2, seed=0, epoch=0)   # e.g. [[2, 0], [1, 3]]
    """
    order = list(range(len(lengths)))
    rng = random.Random(seed * 100_003 + epoch)
    if shuffle:
        rng.shuffle(order)
    if group_by_length:
        mega = batch_size * 50
        grouped: list[int] = []
        for start in range(0, len(order), mega):
            chunk = order[start : start + mega]
            grouped += sorted(chunk, key=lambda i: -lengths[i])
        order = grouped
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle and group_by_length:
        rng.shuffle(batches)
    return batches


def feature_length(feature: Feature) -> int:
    """The token count of *feature* (1 for features without ``input_ids``)."""
    return len(feature["input_ids"]) if "input_ids" in feature else 1


class FeatureDataset(Dataset):
    """Features as a map-style dataset whose items are ``(index, feature)``."""

    def __init__(self, features: Sequence[Feature]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[int, Feature]:
        return index, self.features[index]


def collate_with_index(
    task: Task, tokenizer: Any, *, training: bool = False, rng_key: str | None = None
) -> Callable[[list[tuple[int, Feature]]], dict[str, torch.Tensor]]:
    """The task's collate (``collate_train`` when *training*) that also returns each
    feature's index as ``batch["_index"]``, so outputs can be put back in feature order.

    With *rng_key* (training: the seed and the epoch), the random draws of the collate
    (masking...) come from torch's RNG seeded by the key and the batch's feature indices,
    not from the global stream: the loader collates a batch ahead of the step that uses it,
    and after a resume that batch must be drawn again exactly as the first time."""
    collate_features = task.collate_train if training else task.collate

    def collate(items: list[tuple[int, Feature]]) -> dict[str, torch.Tensor]:
        indices = [i for i, _ in items]
        features = [f for _, f in items]
        if rng_key is None:
            batch = collate_features(features, tokenizer)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(batch_seed(rng_key, indices))
                batch = collate_features(features, tokenizer)
        batch["_index"] = torch.tensor(indices, dtype=torch.long)
        return batch

    return collate


def batch_seed(key: str, indices: Sequence[int]) -> int:
    """A seed for the batch of *indices* under *key*."""
    digest = hashlib.sha256(f"{key}:{','.join(map(str, indices))}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
