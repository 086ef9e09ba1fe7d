"""BERT-style masking through transformers' ``DataCollatorForLanguageModeling``.

Of the tokens, ``mlm_probability`` (15 %) are chosen; of those 80 % become the mask token,
10 % a random token and 10 % stay unchanged. With whole-word masking the collator picks
*words* and masks all their tokens; tunekit hands it word boundaries as offsets: WordPiece
words from the fast tokenizer, and for Chinese the words of a segmenter (jieba, from the
``tunekit-fill-mask[zh]`` extra) — without one every character is its own word.
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from tunekit.plugin import ConfigError

logger = logging.getLogger("tunekit")

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")


def has_cjk(text: str) -> bool:
    """Whether *text* holds a CJK ideograph."""
    return bool(_CJK.search(text))


@functools.cache
def _jieba_cut() -> Callable[[str], list[str]] | None:
    try:
        import jieba
    except ImportError:
        return None
    jieba.setLogLevel(logging.WARNING)
    return lambda text: list(jieba.cut(text, HMM=True))


def chinese_segmenter(name: str) -> Callable[[str], list[str]] | None:
    """The word segmenter for ``chinese_segmenter=`` (``auto`` | ``jieba`` | ``char``).

    ``auto`` uses jieba when it is installed and falls back to characters (logged once);
    ``jieba`` requires it; ``char`` treats every character as a word.
    """
    if name == "char":
        return None
    cut = _jieba_cut()
    if cut is None:
        if name == "jieba":
            raise ConfigError(
                "chinese_segmenter='jieba' needs jieba: pip install 'tunekit-fill-mask[zh]' "
                "(or pass chinese_segmenter='char' to mask single characters)"
            )
        _warn_no_jieba()
    return cut


@functools.cache
def _warn_no_jieba() -> None:
    logger.warning(
        "fill-mask: jieba is not installed, so Chinese whole-word masking masks single characters; "
        "pip install 'tunekit-fill-mask[zh]' for word boundaries"
    )


def word_ids_for(
    text: str,
    offsets: Sequence[tuple[int, int]],
    token_word_ids: Sequence[int | None],
    special: Sequence[int],
    cut: Callable[[str], list[str]] | None,
) -> list[int]:
    """Word index of every token (``-1`` for special tokens), numbered from 0 in order.

    Tokens of CJK text take the word of the segmenter *cut* containing their first
    character (every character its own word without one); other tokens keep the
    tokenizer's own words (WordPiece pieces of one word share it).

    Example::

        enc = tok("巴黎是法国的首都", return_offsets_mapping=True, return_special_tokens_mask=True)
        word_ids_for(text, enc["offset_mapping"], enc.word_ids(), enc["special_tokens_mask"], cut)
        # [-1, 0, 0, 1, 2, 2, 3, 4, 4, -1]   (巴黎 / 是 / 法国 / 的 / 首都)
    """
    char_word: list[int] | None = None
    if cut is not None and has_cjk(text):
        char_word = []
        for index, word in enumerate(cut(text)):
            char_word += [index] * len(word)
    out: list[int] = []
    previous: Any = None
    current = -1
    for i, (start, end) in enumerate(offsets):
        if special[i]:
            out.append(-1)
            previous = None
            continue
        piece = text[start:end]
        if has_cjk(piece):
            key: Any = (
                ("zh", char_word[start])
                if char_word is not None and start < len(char_word)
                else ("char", i)
            )
        else:
            key = ("word", token_word_ids[i])
        if key != previous:
            current += 1
            previous = key
        out.append(current)
    return out


class Masker:
    """Masks padded batches with ``DataCollatorForLanguageModeling.torch_mask_tokens``.

    ``masker(input_ids, special, word_ids)`` draws from the global torch RNG (training:
    new masks every epoch, reproducible under the run's seed); ``seeds=[...]`` masks each
    row with its own generator (evaluation: the same masks every time, so eval loss is
    comparable across epochs and runs).
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        whole_word: bool = False,
    ) -> None:
        from transformers import DataCollatorForLanguageModeling

        if tokenizer.mask_token is None:
            raise ConfigError(
                f"the tokenizer ({type(tokenizer).__name__}) has no mask token, so masked-LM training is not "
                f"possible; use a masked-LM model (BERT, ERNIE, RoBERTa, MiniLM...)"
            )
        with warnings.catch_warnings():
            # whole-word masking in transformers 5 always uses the mask token (no 10/10 split)
            warnings.simplefilter("ignore")
            try:
                self.collator = DataCollatorForLanguageModeling(
                    tokenizer=tokenizer,
                    mlm=True,
                    whole_word_mask=whole_word,
                    mlm_probability=mlm_probability,
                    mask_replace_prob=mask_replace_prob,
                    random_replace_prob=random_replace_prob,
                )
            except ValueError as exc:
                raise ConfigError(f"fill-mask masking options: {exc}") from exc
        self.whole_word = whole_word

    def __call__(
        self,
        input_ids: torch.Tensor,
        special: torch.Tensor,
        word_ids: torch.Tensor | None = None,
        *,
        seeds: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(masked input_ids, labels)``; labels are ``-100`` where nothing is predicted."""
        offsets = _word_offsets(word_ids) if self.whole_word else None
        collator = self.collator
        if seeds is None:
            collator.generator = None
            return collator.torch_mask_tokens(
                input_ids.clone(), special_tokens_mask=special, offset_mapping=offsets
            )
        rows, labels = [], []
        try:
            for i, seed in enumerate(seeds):
                collator.generator = torch.Generator().manual_seed(int(seed))
                row, label = collator.torch_mask_tokens(
                    input_ids[i : i + 1].clone(),
                    special_tokens_mask=special[i : i + 1],
                    offset_mapping=None if offsets is None else offsets[i : i + 1],
                )
                rows.append(row)
                labels.append(label)
        finally:
            collator.generator = None
        return torch.cat(rows), torch.cat(labels)


def _word_offsets(word_ids: torch.Tensor | None) -> np.ndarray:
    """Synthetic character offsets that put tokens of one word next to each other and a gap
    between words: the form ``DataCollatorForLanguageModeling`` reads word boundaries from."""
    if word_ids is None:
        raise ConfigError(
            "whole-word masking needs word ids; encode the features with whole_word_masking=True"
        )
    w = word_ids.numpy().astype(np.int64)
    positions = np.arange(w.shape[1])[None, :]
    start = positions + np.maximum(w, 0)
    return np.stack([start, start + 1], axis=-1)
