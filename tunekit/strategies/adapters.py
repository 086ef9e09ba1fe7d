"""Shared machinery of the peft-based strategies (``lora``, ``peft``): wrapping the
encoder, automatic target modules, small bundles, and verified merging."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import BundleError, ConfigError
from ..strategy import Strategy
from ..taskmodel import TaskModel
from .layers import base_encoder

#: attention projections LoRA adapts by default, per transformers ``model_type``
LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "ernie": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "mpnet": ["q", "v"],
    "distilbert": ["q_lin", "v_lin"],
}
#: (target modules, feed-forward modules) for IA3
IA3_TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "bert": (["key", "value", "output.dense"], ["output.dense"]),
    "ernie": (["key", "value", "output.dense"], ["output.dense"]),
    "roberta": (["key", "value", "output.dense"], ["output.dense"]),
    "xlm-roberta": (["key", "value", "output.dense"], ["output.dense"]),
    "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
}
MERGE_TOLERANCE = 1e-4


def model_type(encoder: nn.Module) -> str:
    return str(getattr(getattr(base_encoder(encoder), "config", None), "model_type", "") or "")


def default_targets(encoder: nn.Module, table: dict[str, Any], peft_table_name: str) -> Any:
    """Target modules for *encoder* from *table*, else peft's own mapping, else an error."""
    kind = model_type(encoder)
    if kind in table:
        return table[kind]
    try:
        from peft.utils import constants

        found = getattr(constants, peft_table_name, {}).get(kind)
    except ImportError:  # pragma: no cover
        found = None
    if found:
        return list(found)
    raise ConfigError(
        f"no default target_modules for model type {kind!r}; pass target_modules=[...] naming its "
        f"attention projections (Linear layers: {', '.join(linear_names(encoder)[:12])})"
    )


def linear_names(encoder: nn.Module) -> list[str]:
    """Distinct last name parts of the Linear layers of *encoder* (for error messages)."""
    seen: dict[str, None] = {}
    for name, module in encoder.named_modules():
        if isinstance(module, nn.Linear):
            seen.setdefault(name.rsplit(".", 1)[-1], None)
    return list(seen)


def check_targets(encoder: nn.Module, targets: str | Sequence[str]) -> None:
    """Raise :class:`ConfigError` when *targets* (peft semantics: a regex matched against the
    full name, or names matched as a suffix) match no module of *encoder*."""
    names = [name for name, _ in encoder.named_modules() if name]
    if isinstance(targets, str):
        hits = [n for n in names if re.fullmatch(targets, n)]
        if not hits:
            raise ConfigError(
                f"target_modules={targets!r} matches no module of the encoder; Linear layers are named "
                f"{', '.join(linear_names(encoder)[:12])}"
            )
        return
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ConfigError(
            f"target_modules {missing} match no module of the encoder ({model_type(encoder) or 'unknown type'}); "
            f"its Linear layers are named {', '.join(linear_names(encoder)[:12])}"
        )


def probe_batch(encoder: nn.Module, *, length: int = 16) -> dict[str, torch.Tensor]:
    """A fixed random batch to compare a model's outputs before / after merging."""
    config = base_encoder(encoder).config
    generator = torch.Generator().manual_seed(0)
    device = next(encoder.parameters()).device
    ids = torch.randint(5, int(config.vocab_size), (2, length), generator=generator)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if getattr(config, "type_vocab_size", 0):
        batch["token_type_ids"] = torch.zeros_like(ids)
    return {k: v.to(device) for k, v in batch.items()}


class AdapterStrategy(Strategy):
    """Base of strategies that wrap the encoder with a peft adapter. The task head always
    trains and is always saved next to the adapter, so a bundle can never reload with a
    random head. Subclasses implement :meth:`peft_config`."""

    #: peft methods whose adapter can be folded into the base weights
    mergeable = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._adapter_keys: set[str] = set()

    def peft_config(self, encoder: nn.Module) -> Any:
        raise NotImplementedError

    def apply(self, model: TaskModel) -> None:
        from peft import get_peft_model

        if hasattr(model.encoder, "peft_config"):
            raise ConfigError(
                "the encoder already carries a peft adapter; build a fresh model to apply another"
            )
        config = self.peft_config(model.encoder)
        try:
            model.encoder = get_peft_model(model.encoder, config)
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise ConfigError(
                f"peft cannot apply {type(config).__name__} to {model_type(model.encoder) or 'this model'}: {exc}"
            ) from exc
        model._encoder_keys = None
        # peft freezes the base; the adapter's parameters are the ones that train (and that a
        # bundle stores, even if a method later turns some of them off, as AdaLoRA does)
        self._adapter_keys = {
            f"encoder.{n}" for n, p in model.encoder.named_parameters() if p.requires_grad
        }
        for module in (model.head, model.representation):
            for param in module.parameters():
                param.requires_grad_(True)

    @property
    def stores_encoder(self) -> bool:
        return False

    def saved_state(self, model: TaskModel) -> dict[str, Any]:
        state = model.state_dict()
        keys = self._adapter_keys or {n for n, p in model.named_parameters() if p.requires_grad}
        return {k: v for k, v in state.items() if k in keys or not k.startswith("encoder.")}

    def merged_model(self, model: TaskModel) -> TaskModel:
        if not self.mergeable:
            raise ConfigError(
                f"strategy {self.name!r} ({getattr(self.config, 'method', self.name)}) cannot be merged into the "
                f"base weights; save without merged=True (the bundle then re-attaches to the base model)"
            )
        clone = copy.deepcopy(model).eval()
        batch = probe_batch(clone.encoder)
        with torch.no_grad():
            before = clone.hidden_states(batch).float()
            merged = TaskModel(clone.encoder.merge_and_unload(), clone.head, clone.representation)
            merged.eval()
            after = merged.hidden_states(batch).float()
        diff = float((before - after).abs().max())
        if not diff < MERGE_TOLERANCE:
            raise BundleError(
                f"merging the {self.name} adapter changes the model's outputs (max abs diff {diff:.2e} >= "
                f"{MERGE_TOLERANCE:g}); refusing to write a merged bundle. Save it unmerged instead"
            )
        for param in merged.parameters():
            param.requires_grad_(True)
        return merged

    def standalone(self) -> Strategy:
        from .full import FullStrategy

        return FullStrategy()
