"""The masked-LM head: the checkpoint's own when it has one, else a new one, both with the
output projection tied to the encoder's word embeddings."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunekit.plugin import ConfigError, Head, read_bundle

logger = logging.getLogger("tunekit")


class TiedDecoder(nn.Module):
    """Output projection ``hidden → vocab`` that reads the encoder's word-embedding matrix.

    The matrix is *not* a parameter of the head (it is held outside the module tree), so it
    is stored once, under the encoder, and trains exactly when the strategy lets the
    encoder's embeddings train (``full``: yes; ``lora`` / ``frozen``: no).
    """

    def __init__(self, embedding: nn.Module, bias: nn.Parameter | None) -> None:
        super().__init__()
        self._embedding = [embedding]  # a list keeps it out of parameters() and state_dict()
        self.bias = bias

    @property
    def weight(self) -> torch.Tensor:
        return self._embedding[0].weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight, self.bias)


class MaskedLMHead(Head):
    """Scores the vocabulary at the positions to predict, and only there.

    The positions are those with a label (``labels != -100``: training and evaluation) or,
    without labels, those holding the mask token (prediction). Returns ``logits``
    ``[n_positions, vocab]`` with their batch ``rows`` and token ``cols`` — never
    ``[batch, tokens, vocab]``.

    Example::

        head, origin = build_mlm_head(backbone)      # origin: "pretrained" or "new"
        out = head(hidden, {"input_ids": ids, "labels": labels})
        out["logits"].shape                          # (number of labelled tokens, vocab)
    """

    name = "masked-lm"
    level = "lm"

    def __init__(self, lm: nn.Module, *, mask_token_id: int) -> None:
        super().__init__()
        self.lm = lm
        self.mask_token_id = int(mask_token_id)

    def forward(
        self, hidden: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        labels = batch.get("labels")
        where = labels != -100 if labels is not None else batch["input_ids"] == self.mask_token_id
        rows, cols = where.nonzero(as_tuple=True)
        return {"logits": self.lm(hidden[rows, cols]), "rows": rows, "cols": cols}


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _checkpoint_has(source: str, prefix: str) -> bool | None:
    """Whether the safetensors files of a local checkpoint hold keys under *prefix*
    (``None``: not a local safetensors checkpoint, so unknown until loaded)."""
    root = Path(source)
    files = sorted(root.glob("*.safetensors")) if root.is_dir() else []
    if not files or (root / "manifest.json").is_file():  # a tunekit bundle: its keys are its own
        return False if files else None
    from safetensors import safe_open

    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            if any(k.startswith(prefix) for k in fh.keys()):  # noqa: SIM118 (safe_open has no __iter__)
                return True
    return False


def build_mlm_head(
    backbone: Any, *, head: str = "auto", restore: bool = False
) -> tuple[MaskedLMHead, str]:
    """``(head, origin)`` for *backbone*; *origin* is ``"pretrained"`` or ``"new"``.

    The head's architecture is the one transformers uses for the checkpoint's
    ``AutoModelForMaskedLM`` class. With ``head="auto"`` its weights come from the
    checkpoint when it has them (BERT/ERNIE ``cls.*``, RoBERTa ``lm_head.*``), else the head
    is new (logged). ``restore=True`` (bundle loading) builds the structure only.
    """
    from transformers import AutoModelForMaskedLM

    tokenizer = backbone.tokenizer
    if tokenizer.mask_token_id is None:
        raise ConfigError(
            f"model {backbone.name!r} has a tokenizer without a mask token; fill-mask needs a masked-LM "
            f"tokenizer (BERT, ERNIE, RoBERTa, MiniLM...)"
        )
    config = backbone.config
    with _quiet_transformers():
        try:
            mlm = AutoModelForMaskedLM.from_config(config, trust_remote_code=False)
        except ValueError as exc:
            raise ConfigError(
                f"model {backbone.name!r} (type {config.model_type!r}) has no masked-LM class in transformers; "
                f"fill-mask needs a BERT-like encoder"
            ) from exc
    lm_name, lm = _head_child(mlm, backbone.name)
    origin = "new"
    if not restore and head in ("auto", "pretrained"):
        has = _checkpoint_has(backbone.source, lm_name + ".")
        if has is not False:
            with _quiet_transformers():
                loaded, info = AutoModelForMaskedLM.from_pretrained(
                    backbone.source, output_loading_info=True, trust_remote_code=False
                )
            missing = [
                k
                for k in info.get("missing_keys", ())
                if k.startswith(lm_name + ".") and not k.endswith("decoder.weight")
            ]
            if not missing:
                mlm = loaded
                lm = getattr(loaded, lm_name)
                origin = "pretrained"
    if getattr(config, "tie_word_embeddings", True):
        _tie(lm, mlm.get_output_embeddings(), backbone.model.get_input_embeddings())
    if not restore and head != "new" and origin == "new" and _load_bundle_head(lm, backbone.source):
        origin = "pretrained"  # continued pretraining from a fill-mask bundle keeps its head
    if not restore and origin == "new" and head == "pretrained":
        raise ConfigError(
            f"head='pretrained' but model {backbone.name!r} has no masked-LM head weights in its checkpoint; "
            f"use head='auto' to train a new head tied to the word embeddings"
        )
    if not restore:
        if origin == "pretrained":
            logger.info("fill-mask: using the pretrained masked-LM head of %s", backbone.name)
        else:
            logger.warning(
                "fill-mask: %s has no pretrained masked-LM head; training a new one tied to the word embeddings "
                "(its predictions are meaningless until it has trained)",
                backbone.name,
            )
    return MaskedLMHead(lm, mask_token_id=tokenizer.mask_token_id), origin


def _load_bundle_head(lm: nn.Module, source: str) -> bool:
    """Load the MLM head of a ``fill-mask`` bundle at *source* into *lm*; ``False`` if
    *source* is not such a bundle or its head does not fit. The bundle is verified against
    its manifest first (:func:`tunekit.plugin.read_bundle`)."""
    found = read_bundle(source)
    if found is None:
        return False
    meta, tensors = found
    if meta.get("task", {}).get("name") != "fill-mask":
        return False
    prefix = "head.lm."
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        lm.load_state_dict(state, strict=True)
    except RuntimeError:
        return False
    return True


def _head_child(mlm: nn.Module, name: str) -> tuple[str, nn.Module]:
    prefix = getattr(mlm, "base_model_prefix", "")
    children = [(n, m) for n, m in mlm.named_children() if n != prefix]
    if len(children) != 1:
        raise ConfigError(
            f"model {name!r}: {type(mlm).__name__} splits its masked-LM head over {len(children)} modules "
            f"({', '.join(n for n, _ in children)}); fill-mask supports heads in one module (BERT, ERNIE, RoBERTa...)"
        )
    return children[0]


def _tie(lm: nn.Module, decoder: nn.Module | None, embedding: nn.Module) -> None:
    """Replace *decoder* inside *lm* by a :class:`TiedDecoder` reading *embedding*."""
    if decoder is None:
        return
    for path, module in lm.named_modules():
        if module is decoder and path:
            parent_path, _, attr = path.rpartition(".")
            parent = lm.get_submodule(parent_path) if parent_path else lm
            setattr(parent, attr, TiedDecoder(embedding, decoder.bias))
            return
