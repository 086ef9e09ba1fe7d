"""The feature cache of frozen-encoder strategies: the encoder runs once per feature.

With the encoder frozen and in eval mode its outputs are a fixed function of the token
ids, so the trainer computes them once (``TaskModel.cacheable_features``) and feeds the
cached tensors to the trainable part (``TaskModel.forward(batch, features=...)``) every
epoch. Optionally the tensors are also kept on disk, keyed by the encoder's weights hash,
the representation and every feature's token ids (so text, tokenizer and ``max_length``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..inference import map_batches
from ..models import state_dict_sha256
from ..task import Feature
from ..taskmodel import TaskModel

logger = logging.getLogger("tunekit")


class FeatureCache:
    """Cached encoder features of feature lists, computed on first use.

    Example::

        cache = FeatureCache(model, collate=lambda fs: task.collate(fs, tok), batch_size=64)
        features = cache.batch(train_features, batch["_index"], batch)   # [B, (L,) T, H]
    """

    def __init__(
        self,
        model: TaskModel,
        *,
        collate: Callable[[list[Feature]], dict[str, torch.Tensor]],
        batch_size: int = 64,
        cache_dir: str | os.PathLike | None = None,
        autocast: Callable[[], AbstractContextManager[Any]] | None = None,
        padding_side: str = "right",
        tag: str = "",
    ) -> None:
        self.model = model
        self.collate = collate
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.autocast = autocast or nullcontext
        self.padding_side = padding_side
        self.tag = tag
        self._store: dict[int, tuple[Sequence[Feature], list[torch.Tensor]]] = {}
        self._weights_hash: str | None = None
        #: seconds spent running the encoder to fill the cache
        self.encode_seconds = 0.0

    def tensors(self, features: Sequence[Feature]) -> list[torch.Tensor]:
        """One unpadded tensor ``[(L,) tokens, hidden]`` per feature (computed once)."""
        entry = self._store.get(id(features))
        if entry is not None and entry[0] is features:
            return entry[1]
        path = self._disk_path(features)
        if path is not None and path.is_file():
            from safetensors.torch import load_file

            loaded = load_file(str(path))
            tensors = [loaded[str(i)] for i in range(len(features))]
            logger.info("feature cache: loaded %d features from %s", len(features), path)
        else:
            tensors = self._compute(features)
            if path is not None:
                from safetensors.torch import save_file

                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
                save_file({str(i): t for i, t in enumerate(tensors)}, str(partial))
                os.replace(partial, path)  # readers never see a half-written cache file
        self._store[id(features)] = (features, tensors)
        return tensors

    def batch(
        self, features: Sequence[Feature], index: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The cached features of ``features[index]``, padded like *batch*'s ``input_ids``."""
        tensors = self.tensors(features)
        width = (
            batch["input_ids"].shape[1]
            if "input_ids" in batch
            else max(tensors[i].shape[-2] for i in index.tolist())
        )
        rows = []
        for i in index.tolist():
            t = tensors[i]
            pad = width - t.shape[-2]
            spec = (0, 0, pad, 0) if self.padding_side == "left" else (0, 0, 0, pad)
            rows.append(F.pad(t, spec) if pad > 0 else t[..., :width, :])
        device = (
            batch["input_ids"].device
            if "input_ids" in batch
            else next(self.model.parameters()).device
        )
        return torch.stack(rows).to(device)

    def _compute(self, features: Sequence[Feature]) -> list[torch.Tensor]:
        import time

        start = time.perf_counter()

        def trimmed(feature: Feature, row: dict[str, torch.Tensor]) -> torch.Tensor:
            feats = row["features"]
            width = feats.shape[-2]
            n = len(feature["input_ids"]) if "input_ids" in feature else width
            part = feats[..., width - n :, :] if self.padding_side == "left" else feats[..., :n, :]
            return part.contiguous().clone()

        out = map_batches(
            self.model,
            features,
            lambda batch: {"features": self.model.cacheable_features(batch)},
            collate=self.collate,
            batch_size=self.batch_size,
            context=self.autocast,
            keep=trimmed,
            grad_mode=torch.no_grad,  # the cached tensors feed autograd (as inputs) later
        )
        self.encode_seconds += time.perf_counter() - start
        return out

    def _disk_path(self, features: Sequence[Feature]) -> Path | None:
        if self.cache_dir is None:
            return None
        if self._weights_hash is None:
            self._weights_hash = state_dict_sha256(self.model.encoder.state_dict())
        digest = hashlib.sha256()
        digest.update(self._weights_hash.encode())
        digest.update(type(self.model.representation).__name__.encode())
        digest.update(self.tag.encode())
        for feature in features:
            for key in ("input_ids", "token_type_ids", "attention_mask"):
                if key in feature:
                    digest.update(key.encode())
                    digest.update(repr(list(feature[key])).encode())
        return self.cache_dir / f"features-{digest.hexdigest()[:32]}.safetensors"
