"""Test helpers for tunekit and plugin authors.

``make_tiny_model`` builds a tiny randomly initialised BERT (or ERNIE) with a vocabulary
made from your texts and saves it like a hub model, so tests run offline in seconds and
go through exactly the loading path a real checkpoint takes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _pieces(text: str, chinese: bool) -> list[str]:
    text = text.lower()
    if chinese:
        return [c for c in text if not c.isspace()]
    return re.findall(r"\w+|[^\w\s]", text)


def make_tiny_model(
    path: str | os.PathLike,
    texts: Iterable[str] = (),
    *,
    model_type: str = "bert",
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_position_embeddings: int = 128,
    chinese: bool = False,
    seed: int = 0,
) -> str:
    """Save a tiny random ``bert``/``ernie`` encoder + WordPiece tokenizer at *path*.

    The vocabulary holds the special tokens, every word (or every character when
    *chinese*) of *texts*, and the ASCII letters and digits so nothing is ``[UNK]``-only.

    Example::

        path = make_tiny_model(tmp_path / "tiny", ["good film", "bad film"])
        run = tunekit.finetune(task="classify", model=path, data=records)
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, None] = dict.fromkeys(SPECIAL_TOKENS)
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-":
        vocab.setdefault(ch, None)
    for text in texts:
        for piece in _pieces(text, chinese):
            vocab.setdefault(piece, None)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    import inspect

    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    else:
        tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = max_position_embeddings
    tokenizer.save_pretrained(path)
    common = dict(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=max_position_embeddings,
        type_vocab_size=2,
    )
    torch.manual_seed(seed)
    if model_type == "ernie":
        from transformers import ErnieConfig, ErnieModel

        model = ErnieModel(ErnieConfig(**common))
    elif model_type == "bert":
        model = BertModel(BertConfig(**common))
    else:
        raise ValueError(f"model_type must be 'bert' or 'ernie', not {model_type!r}")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(path)
    return str(path)
