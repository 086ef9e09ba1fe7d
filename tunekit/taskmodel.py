"""The trained network: encoder → representation → head."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .head import Head


class LastHiddenState(nn.Module):
    """Default representation: the encoder's last hidden layer."""

    needs_all_layers = False

    def forward(self, encoder_outputs: Any) -> torch.Tensor:
        return encoder_outputs.last_hidden_state if hasattr(encoder_outputs, "last_hidden_state") else encoder_outputs[0]


class TaskModel(nn.Module):
    """Encoder + representation + head, as one module the trainer and bundles handle.

    ``representation`` turns the encoder's outputs into ``[batch, tokens, hidden]``
    (the last layer by default; strategies may install a learned layer mix). ``forward``
    takes a collated batch dict and returns the head's outputs dict.
    """

    def __init__(self, encoder: nn.Module, head: Head, representation: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.representation = representation if representation is not None else LastHiddenState()
        self.head = head
        self._encoder_keys: tuple[str, ...] | None = None

    def encoder_inputs(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self._encoder_keys is None:
            base = getattr(self.encoder, "get_base_model", lambda: self.encoder)()
            params = inspect.signature(base.forward).parameters
            self._encoder_keys = tuple(
                k for k in ("input_ids", "attention_mask", "token_type_ids", "position_ids") if k in params
            )
        return {k: batch[k] for k in self._encoder_keys if k in batch}

    def hidden_states(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """What the head reads: ``representation(encoder(batch))``."""
        all_layers = bool(getattr(self.representation, "needs_all_layers", False))
        outputs = self.encoder(**self.encoder_inputs(batch), output_hidden_states=all_layers, return_dict=True)
        return self.representation(outputs)

    def forward(self, batch: Mapping[str, torch.Tensor], hidden: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if hidden is None:
            hidden = self.hidden_states(batch)
        return self.head(hidden, batch)

    def trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return trainable, total
