"""The encoder's last layer computed for the first token only, when nothing else is read.

A head that pools the ``[CLS]`` position (``pooling="cls"``) reads one row of the last
hidden layer. Inside that layer, the other rows feed nothing the head reads: the first
token's query attends over every token's key and value, and its own row then goes through
the attention output, residual, LayerNorms and feed-forward. So the last layer runs its
query projection, attention, output projection and feed-forward on the first row alone;
keys and values still come from every token. The result is the full computation's first
row up to float rounding (a different matmul blocking), with ~10/12 of one layer's matmul
work gone (the key and value projections stay): ~14 % of a 6-layer MiniLM's encoder
FLOPs, forward and backward.

It applies to the BERT family as transformers >= 5 writes it (BERT, RoBERTa, XLM-R,
ERNIE, ELECTRA, CamemBERT) with eager or SDPA attention; any other encoder runs in full.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

#: self-attention classes whose layer is ``attention.self`` (query/key/value), then
#: ``attention.output`` (dense, dropout, residual LayerNorm), then ``feed_forward_chunk``
_SELF_ATTENTION = frozenset(
    f"{name}SelfAttention"
    for name in ("Bert", "Roberta", "XLMRoberta", "Ernie", "Electra", "Camembert")
)
_ATTENTION = ("eager", "sdpa")
_FLAG = "_tunekit_first_token_only"


def first_token_layer(encoder: nn.Module) -> nn.Module | None:
    """The last layer of *encoder* (a transformers model, or a PEFT model around one),
    prepared to run for the first token only under :func:`first_token_only`; ``None``
    where the encoder is not of a supported kind (it then always runs in full).

    Example::

        layer = first_token_layer(backbone.model)
        with first_token_only(layer):
            out = backbone.model(**inputs).last_hidden_state   # [batch, 1, hidden]
    """
    base = getattr(encoder, "get_base_model", lambda: encoder)()
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    config = getattr(base, "config", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers) or config is None:
        return None
    layer = layers[-1]
    attention = getattr(layer, "attention", None)
    if (
        type(getattr(attention, "self", None)).__name__ not in _SELF_ATTENTION
        or getattr(config, "_attn_implementation", None) not in _ATTENTION
        or getattr(config, "is_decoder", False)
        or hasattr(layer, "crossattention")
        or _attention_interface() is None
    ):
        return None
    if _FLAG not in layer.__dict__:
        setattr(layer, _FLAG, False)
    if getattr(layer.__dict__.get("forward"), "__func__", None) is not _forward:
        # an instance attribute (state dict and class untouched); a bound method, so that a
        # deep copy of the model gets one bound to its own copy of the layer. Installed
        # again where it was removed while the flag stayed (taskmodel.detached_copy drops
        # every instance-level forward of the copy an export traces)
        layer.forward = types.MethodType(_forward, layer)
    return layer


@contextmanager
def first_token_only(layer: nn.Module | None) -> Iterator[None]:
    """Within this block the encoder's last hidden state is ``[batch, 1, hidden]``: the
    first token's row alone (*layer* from :func:`first_token_layer`; ``None`` does nothing)."""
    if layer is None:
        yield
        return
    before = getattr(layer, _FLAG)
    setattr(layer, _FLAG, True)
    try:
        yield
    finally:
        setattr(layer, _FLAG, before)


def _forward(layer: nn.Module, hidden: torch.Tensor, attention_mask: Any = None, *args, **kwargs):
    if not getattr(layer, _FLAG):  # the class's forward (gradient checkpointing included)
        return type(layer).forward(layer, hidden, attention_mask, *args, **kwargs)
    return _first_row(layer, hidden, attention_mask)


_INTERFACE: list[Any] = []  # looked up once: (ALL_ATTENTION_FUNCTIONS, eager) or None


def _attention_interface():
    if not _INTERFACE:
        _INTERFACE.append(_lookup_interface())
    return _INTERFACE[0]


def _lookup_interface():
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        return None  # 4.x: other attention classes, checkpointing around the layer's call
    try:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.bert.modeling_bert import eager_attention_forward
    except ImportError:
        return None
    if not hasattr(ALL_ATTENTION_FUNCTIONS, "get_interface"):
        return None
    return ALL_ATTENTION_FUNCTIONS, eager_attention_forward


def _first_row(layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The layer's output for row 0 of *hidden*: queries from that row, keys and values
    from every row, then the attention output and feed-forward on that row only."""
    functions, eager = _attention_interface()
    attn = layer.attention.self
    batch, tokens, _ = hidden.shape
    first = hidden[:, :1]
    heads = (-1, attn.attention_head_size)
    query = attn.query(first).view(batch, 1, *heads).transpose(1, 2)
    key = attn.key(hidden).view(batch, tokens, *heads).transpose(1, 2)
    value = attn.value(hidden).view(batch, tokens, *heads).transpose(1, 2)
    if mask is not None and mask.dim() == 4 and mask.shape[-2] > 1:
        mask = mask[:, :, :1, :]  # the first query's row of the [batch, 1, q, k] mask
    interface = functions.get_interface(attn.config._attn_implementation, eager)
    out, _ = interface(
        attn, query, key, value, mask,
        dropout=attn.dropout.p if attn.training else 0.0, scaling=attn.scaling,
    )  # fmt: skip
    out = layer.attention.output(out.reshape(batch, 1, -1).contiguous(), first)
    return layer.feed_forward_chunk(out)
