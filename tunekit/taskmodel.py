"""The trained network: encoder → representation → head."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .first_token import first_token_layer, first_token_only
from .head import Head


class LastHiddenState(nn.Module):
    """Default representation: the encoder's last hidden layer.

    A representation splits in two steps so that a frozen encoder's part can be cached:
    ``features(encoder_outputs)`` (no trainable parameters; ``[batch, tokens, hidden]`` or
    ``[batch, layers, tokens, hidden]``, tokens always second to last) and
    ``combine(features)`` → ``[batch, tokens, hidden]`` (may learn, e.g. a layer mix).
    """

    needs_all_layers = False

    def features(self, encoder_outputs: Any) -> torch.Tensor:
        return (
            encoder_outputs.last_hidden_state
            if hasattr(encoder_outputs, "last_hidden_state")
            else encoder_outputs[0]
        )

    def combine(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def forward(self, encoder_outputs: Any) -> torch.Tensor:
        return self.combine(self.features(encoder_outputs))


class TaskModel(nn.Module):
    """Encoder + representation + head, as one module the trainer and bundles handle.

    ``representation`` turns the encoder's outputs into ``[batch, tokens, hidden]``
    (the last layer by default; strategies may install a learned layer mix). ``forward``
    takes a collated batch dict and returns the head's outputs dict.

    When the head reads the first token alone (``Head.first_token_only``, a ``[CLS]``-pooling
    head) on the last layer, ``forward`` runs the encoder's last layer for that token only
    (:mod:`tunekit.first_token`): the same logits up to float rounding, ~14 % fewer encoder
    FLOPs on a 6-layer model, in training and prediction. ``skip_unread_positions = False``
    (on the class or one instance) computes every position.
    """

    #: run the last layer for the positions the head reads only (see the class docstring)
    skip_unread_positions: bool = True

    def __init__(
        self, encoder: nn.Module, head: Head, representation: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.representation = representation if representation is not None else LastHiddenState()
        self.head = head
        #: keep the encoder in eval mode while training (set by strategies that freeze it:
        #: no dropout, so features computed once and cached equal the live ones)
        self.encoder_eval = False
        self._encoder_keys: tuple[str, ...] | None = None

    def train(self, mode: bool = True) -> TaskModel:
        super().train(mode)
        if mode and self.encoder_eval:
            self.encoder.eval()
        return self

    def encoder_inputs(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self._encoder_keys is None:
            base = getattr(self.encoder, "get_base_model", lambda: self.encoder)()
            params = inspect.signature(base.forward).parameters
            self._encoder_keys = tuple(
                k
                for k in ("input_ids", "attention_mask", "token_type_ids", "position_ids")
                if k in params
            )
        return {k: batch[k] for k in self._encoder_keys if k in batch}

    def encoder_outputs(self, batch: Mapping[str, torch.Tensor]) -> Any:
        all_layers = bool(getattr(self.representation, "needs_all_layers", False))
        return self.encoder(
            **self.encoder_inputs(batch), output_hidden_states=all_layers, return_dict=True
        )

    def hidden_states(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """What the head reads: ``representation(encoder(batch))``."""
        return self.representation(self.encoder_outputs(batch))

    def cacheable_features(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The encoder-side part of the representation (what a feature cache stores)."""
        features = getattr(self.representation, "features", None)
        outputs = self.encoder_outputs(batch)
        return features(outputs) if features is not None else self.representation(outputs)

    def forward(
        self,
        batch: Mapping[str, torch.Tensor],
        hidden: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Head outputs for *batch*; *hidden* skips encoder and representation, *features*
        (cached :meth:`cacheable_features`) skips only the encoder."""
        if hidden is None and features is not None:
            combine = getattr(self.representation, "combine", None)
            hidden = combine(features) if combine is not None else features
        if hidden is None:
            with first_token_only(self._first_token_layer()):
                hidden = self.hidden_states(batch)
        return self.head(hidden, batch)

    def _first_token_layer(self) -> nn.Module | None:
        """The encoder layer to run for the first token only, when that is all the head reads."""
        if not (
            self.skip_unread_positions
            and getattr(self.head, "first_token_only", False)
            and type(self.representation) is LastHiddenState
        ):
            return None
        return first_token_layer(self.encoder)

    def trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return trainable, total


def detached_copy(model: nn.Module, original: nn.Module) -> nn.Module:
    """*model* as a module of its own, for an export to trace or rewrite: a deep copy when it
    is *original* (the run's model, left as it is), and with every instance-level
    ``forward`` removed (``compile=True`` leaves a compiled forward on the instance, bound
    to the original module, which a copy would otherwise call)."""
    model = copy.deepcopy(model) if model is original else model
    for module in model.modules():
        module.__dict__.pop("forward", None)
    return model


def probe_batch(model: TaskModel, tokenizer: Any) -> dict[str, torch.Tensor]:
    """A fixed batch (two texts of random tokens, one padded, one with mask tokens)."""
    config = model.encoder.config
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, int(config.vocab_size), (2, 12), generator=generator)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is not None and sep is not None:
        ids[:, 0], ids[:, -1] = cls, sep
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    if tokenizer.pad_token_id is not None:
        ids[1, 8:] = tokenizer.pad_token_id
    if tokenizer.mask_token_id is not None:
        ids[:, 3] = tokenizer.mask_token_id
    batch = {"input_ids": ids, "attention_mask": mask}
    if getattr(config, "type_vocab_size", 0):
        types = torch.zeros_like(ids)
        types[0, 6:] = 1
        batch["token_type_ids"] = types
    return batch
