"""Finding an encoder's transformer blocks, for strategies that treat layers differently
(``top-k`` unfreezes the last k, ``full`` with ``lr_decay`` scales each layer's rate)."""

from __future__ import annotations

import re

from torch import nn

from ..errors import ConfigError

# BERT / ERNIE / RoBERTa / XLM-R: encoder.layer.N; DistilBERT: transformer.layer.N;
# GPT-style / others: h.N, layers.N, block.N.
_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")


def base_encoder(encoder: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (or *encoder* itself)."""
    return getattr(encoder, "get_base_model", lambda: encoder)()


def num_layers(encoder: nn.Module) -> int:
    """How many transformer blocks *encoder* has (from its config, else from parameter names)."""
    config = getattr(base_encoder(encoder), "config", None)
    count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    if count:
        return int(count)
    found = {layer_of(name) for name, _ in encoder.named_parameters()} - {None}
    if not found:
        raise ConfigError(
            f"cannot find transformer layers in {type(encoder).__name__}; use strategy='full' or 'frozen'"
        )
    return max(found) + 1  # type: ignore[type-var]


def layer_of(name: str) -> int | None:
    """Index of the transformer block a parameter name belongs to, or ``None``."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def is_embedding(name: str) -> bool:
    return "embeddings" in name or "embed_tokens" in name or name.startswith(("wte.", "wpe."))
