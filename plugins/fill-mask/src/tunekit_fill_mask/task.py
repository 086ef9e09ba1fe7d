"""``fill-mask`` (aliases ``mlm``, ``cloze``): masked-LM fine-tuning and cloze prediction.

Training data is plain text: a ``.txt`` file (one line per record), a text column of any
table tunekit reads, or a list of strings. Masks are drawn when a batch is formed:
fresh ones every epoch for training (:meth:`FillMaskTask.collate_train`), the same seeded
ones on every evaluation (:meth:`FillMaskTask.collate`), so eval loss, perplexity and
masked-token accuracy are comparable from epoch to epoch and run to run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
import torch.nn.functional as F

from tunekit.plugin import (
    ConfigError,
    DataError,
    Feature,
    Head,
    Record,
    Task,
    default_collate,
    find_column,
    is_missing,
    one_of,
    pad_sequences,
    read_table,
    text_inputs,
)

from .head import build_mlm_head
from .masking import Masker, chinese_segmenter, has_cjk, word_ids_for

TEXT_COLUMNS = (
    "text",
    "sentence",
    "line",
    "content",
    "document",
    "body",
    "review",
    "snippet",
    "input",
)
#: candidates kept per mask position at prediction time (the largest ``top_k`` accepted)
MAX_TOP_K = 100
MASK_PLACEHOLDER = "[MASK]"


def _probability(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"option {attribute.name}={value!r} must be between 0 and 1")


def _mlm_probability(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"option mlm_probability={value!r} must be in (0, 1]; BERT uses 0.15")


def _top_k(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise ConfigError(f"option top_k={value!r} must be an integer from 1 to {MAX_TOP_K}")


@attrs.frozen(kw_only=True)
class FillMaskConfig:
    """Options of ``fill-mask``.

    - ``text_column``: column holding the text (auto-detected: text, sentence, line...).
    - ``line_by_line``: one feature per record, truncated to ``max_length`` (default);
      ``False`` concatenates all records and cuts blocks of ``max_length`` tokens (long
      documents, no padding, no truncation loss).
    - ``mlm_probability`` (0.15), ``mask_replace_prob`` (0.8), ``random_replace_prob``
      (0.1): BERT's 15 % of tokens, of which 80 % → mask token, 10 % → random, 10 % kept.
    - ``whole_word_masking``: mask whole words (WordPiece words; Chinese words from
      ``chinese_segmenter``). transformers then always uses the mask token (no 10/10).
    - ``chinese_segmenter``: ``auto`` (jieba if installed, else characters), ``jieba``, ``char``.
    - ``eval_seed``: seed of the fixed evaluation masks.
    - ``head``: ``auto`` (the checkpoint's MLM head if it has one, else a new tied one),
      ``pretrained`` (require it), ``new`` (always a new one).
    - ``top_k``: candidates per mask returned by ``predict()`` (a ``top_k=`` argument wins).
    """

    text_column: str | None = None
    line_by_line: bool = True
    mlm_probability: float = attrs.field(default=0.15, validator=_mlm_probability)
    mask_replace_prob: float = attrs.field(default=0.8, validator=_probability)
    random_replace_prob: float = attrs.field(default=0.1, validator=_probability)
    whole_word_masking: bool = False
    chinese_segmenter: str = attrs.field(default="auto", validator=one_of("auto", "jieba", "char"))
    eval_seed: int = 1234
    head: str = attrs.field(default="auto", validator=one_of("auto", "pretrained", "new"))
    top_k: int = attrs.field(default=5, validator=_top_k)

    def __attrs_post_init__(self) -> None:
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-9:
            raise ConfigError(
                f"mask_replace_prob + random_replace_prob = {self.mask_replace_prob + self.random_replace_prob} "
                f"must not exceed 1 (the rest of the chosen tokens are kept unchanged)"
            )


class FillMaskTask(Task):
    """Masked-language-model fine-tuning (domain adaptation) and cloze prediction.

    Example::

        run = tunekit.finetune(task="fill-mask", data="corpus.txt", epochs=3, whole_word_masking=True)
        run.history                      # eval_loss, perplexity, masked_accuracy per epoch
        run.predict("The capital of France is [MASK].", top_k=5)
        # [{'score': 0.71, 'token': 3000, 'token_str': 'paris', 'sequence': 'the capital of france is paris.'}, ...]
        run.save("out/mlm-adapted")
        tunekit.finetune(task="classify", model="out/mlm-adapted", data="reviews.csv")   # adapted encoder
    """

    name = "fill-mask"
    head_levels = ("lm",)
    aliases = ("mlm", "cloze", "masked-lm")
    description = "masked-LM fine-tuning (domain adaptation) and [MASK] prediction"
    Config = FillMaskConfig
    default_metric = "eval_loss"
    greater_is_better = False
    cacheable_inputs = False  # masks are drawn per batch, so encoder outputs change every epoch

    def __init__(self, config: FillMaskConfig | None = None) -> None:
        super().__init__(config)
        self.head_origin: str | None = None
        self._restored = False
        self._maskers: dict[int, Masker] = {}
        self._tokenizer: Any = None

    # ---- data ---------------------------------------------------------------------------
    def read(self, source: Any, *, name: str = "data") -> list[Record]:
        rows = read_table(source, name=name, tuple_columns=("text",))
        columns = list(rows[0].keys())
        column = find_column(
            columns,
            self.config.text_column,
            TEXT_COLUMNS,
            role="text",
            name=name,
            option="text_column",
        )
        records = []
        for i, row in enumerate(rows):
            text = row.get(column)
            if is_missing(text):
                continue
            if not isinstance(text, str):
                raise DataError(
                    f"{name} record {i} has a {type(text).__name__} in column {column!r}, not text: {text!r}"
                )
            if text.strip():  # blank lines separate paragraphs in text files; they carry nothing
                records.append({"text": text})
        if not records:
            raise DataError(f"{name} has no text: every value of column {column!r} is empty")
        return records

    def parse_inputs(self, inputs: Any) -> list[Record]:
        return text_inputs(inputs)

    def encode(
        self, records: Sequence[Record], tokenizer: Any, *, max_length: int, with_labels: bool
    ) -> list[Feature]:
        if not with_labels:
            return self._encode_queries(records, tokenizer, max_length=max_length)
        wwm = self.config.whole_word_masking
        if wwm and not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                "whole_word_masking=True needs a fast tokenizer (word boundaries come from its offsets)"
            )
        texts = [r["text"] for r in records]
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # grouped mode tokenizes whole documents past max_length on purpose
        try:
            enc = tokenizer(
                texts,
                truncation=self.config.line_by_line,
                max_length=max_length if self.config.line_by_line else None,
                return_special_tokens_mask=True,
                return_offsets_mapping=wwm,
            )
        finally:
            hf_logging.set_verbosity(level)
        cut = (
            chinese_segmenter(self.config.chinese_segmenter)
            if wwm and any(has_cjk(t) for t in texts)
            else None
        )
        has_types = "token_type_ids" in enc
        rows = []
        for j, text in enumerate(texts):
            row: Feature = {
                "input_ids": enc["input_ids"][j],
                "_special": enc["special_tokens_mask"][j],
            }
            if has_types:
                row["token_type_ids"] = enc["token_type_ids"][j]
            if wwm:
                row["_words"] = word_ids_for(
                    text, enc["offset_mapping"][j], enc.word_ids(j), row["_special"], cut
                )
            rows.append(row)
        features = (
            rows
            if self.config.line_by_line
            else _group(rows, max_length=max_length, wwm=wwm, types=has_types)
        )
        for index, feature in enumerate(features):
            feature.setdefault("example_index", index)
            feature["attention_mask"] = [1] * len(feature["input_ids"])
            feature["_seed"] = index
            feature["_mlm"] = True
            feature["labels"] = (
                None  # drawn by collate (the trainer looks for the key to report eval_loss)
            )
        return features

    def _encode_queries(
        self, records: Sequence[Record], tokenizer: Any, *, max_length: int
    ) -> list[Feature]:
        self._tokenizer = tokenizer  # decode() turns candidate ids back into text with it
        mask = tokenizer.mask_token
        if mask is None:
            raise ConfigError("the tokenizer has no mask token; fill-mask needs a masked-LM model")
        texts = [r["text"].replace(MASK_PLACEHOLDER, mask) for r in records]
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        features = []
        for j, text in enumerate(texts):
            ids = enc["input_ids"][j]
            if tokenizer.mask_token_id not in ids:
                if mask in text:
                    raise DataError(
                        f"predict input {j}: its {MASK_PLACEHOLDER} lies past max_length={max_length} tokens and was "
                        f"truncated away; shorten the text or raise max_length"
                    )
                raise DataError(
                    f"predict input {j} has no mask to fill: {records[j]['text'][:80]!r}. Write {MASK_PLACEHOLDER} "
                    f"where a token is missing (e.g. 'The capital of France is {MASK_PLACEHOLDER}.')"
                )
            feature: Feature = {k: enc[k][j] for k in keys}
            feature["example_index"] = j
            features.append(feature)
        return features

    def collate(self, features: Sequence[Feature], tokenizer: Any) -> dict[str, torch.Tensor]:
        """Pad; features from labelled data get their fixed, seeded masks (evaluation)."""
        batch = default_collate(features, tokenizer)
        if features and features[0].get("_mlm"):
            seeds = [self.config.eval_seed * 1_000_003 + int(f["_seed"]) for f in features]
            self._mask(batch, features, tokenizer, seeds=seeds)
        return batch

    def collate_train(self, features: Sequence[Feature], tokenizer: Any) -> dict[str, torch.Tensor]:
        """Pad and draw fresh masks from the (seeded) global RNG: new masks every epoch."""
        batch = default_collate(features, tokenizer)
        self._mask(batch, features, tokenizer, seeds=None)
        return batch

    def _mask(
        self, batch: dict[str, torch.Tensor], features: Sequence[Feature], tokenizer: Any, *, seeds
    ) -> None:
        ids = batch["input_ids"]
        length = ids.shape[1]
        left = getattr(tokenizer, "padding_side", "right") == "left"
        special = _pad([f["_special"] for f in features], 1, length, left)
        words = (
            _pad([f["_words"] for f in features], -1, length, left)
            if self.config.whole_word_masking
            else None
        )
        masker = self._maskers.get(id(tokenizer))
        if masker is None:
            cfg = self.config
            masker = self._maskers[id(tokenizer)] = Masker(
                tokenizer,
                mlm_probability=cfg.mlm_probability,
                mask_replace_prob=cfg.mask_replace_prob,
                random_replace_prob=cfg.random_replace_prob,
                whole_word=cfg.whole_word_masking,
            )
        batch["input_ids"], batch["labels"] = masker(ids, special, words, seeds=seeds)

    # ---- model --------------------------------------------------------------------------
    def build_head(self, backbone: Any) -> Head:
        head, origin = build_mlm_head(backbone, head=self.config.head, restore=self._restored)
        if not self._restored:
            self.head_origin = origin
        return head

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = outputs["logits"]
        if logits.shape[0] == 0:  # nothing was masked in this batch (short texts)
            return logits.sum() * 0.0
        targets = batch["labels"][outputs["rows"], outputs["cols"]]
        return F.cross_entropy(logits.float(), targets)

    def export_batch(
        self, batch: Mapping[str, torch.Tensor], tokenizer: Any
    ) -> dict[str, torch.Tensor]:
        """ONNX export's graph inputs: the encoder inputs and, as ``labels``, the positions
        to score (``0`` there, ``-100`` elsewhere): the labelled positions when evaluating,
        the mask tokens when predicting; the head scores exactly the same positions as in
        torch, and the real labels never enter the graph."""
        inputs = {k: v for k, v in batch.items() if k != "labels" and isinstance(v, torch.Tensor)}
        labels = batch.get("labels")
        if labels is not None:
            where = labels != -100
        else:
            where = batch["input_ids"] == tokenizer.mask_token_id
        inputs["labels"] = torch.where(where, 0, -100).long()
        return inputs

    def batch_outputs(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Per feature, only the masked positions: their gold id, top-1 id and loss when
        evaluating; their top candidates and probabilities when predicting."""
        logits = outputs["logits"].float()
        rows, cols = outputs["rows"], outputs["cols"]
        size = batch["input_ids"].shape[0]
        counts = torch.bincount(rows, minlength=size)
        width = max(int(counts.max()) if rows.numel() else 0, 1)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(rows.numel(), device=rows.device) - starts[rows]

        def grid(values: torch.Tensor, fill: float, *extra: int) -> torch.Tensor:
            out = torch.full((size, width, *extra), fill, dtype=values.dtype, device=values.device)
            out[rows, slot] = values
            return out

        kept = {"positions": grid(cols, -1)}
        if "labels" in batch:
            gold = batch["labels"][rows, cols]
            nll = (
                F.cross_entropy(logits, gold, reduction="none")
                if rows.numel()
                else logits.new_zeros(0)
            )
            kept.update(gold=grid(gold, -100), top1=grid(logits.argmax(-1), -1), nll=grid(nll, 0.0))
        else:
            k = min(MAX_TOP_K, logits.shape[-1])
            scores, ids = logits.softmax(-1).topk(k, dim=-1)
            kept.update(top_ids=grid(ids, -1, k), top_scores=grid(scores, 0.0, k))
        return kept

    def decode(self, outputs, features, records, **options: Any) -> list[Any]:
        if outputs and "gold" in outputs[0]:
            return self._decode_scores(outputs, features, records)
        tokenizer = options.pop("tokenizer", None) or self._tokenizer
        top_k = options.pop("top_k", self.config.top_k)
        if options:
            raise ConfigError(
                f"unknown fill-mask predict option(s) {sorted(options)}; fill-mask takes top_k="
            )
        _top_k(None, None, top_k)
        if tokenizer is None:
            raise ConfigError("fill-mask decoding needs the tokenizer: encode() the inputs first")
        predictions = []
        for out, feature in zip(outputs, features):
            ids = list(feature["input_ids"])
            per_mask = []
            for m, position in enumerate(out["positions"]):
                if position < 0:
                    continue
                candidates = []
                for cand, score in zip(out["top_ids"][m][:top_k], out["top_scores"][m][:top_k]):
                    filled = ids.copy()
                    filled[int(position)] = int(cand)
                    candidates.append(
                        {
                            "score": float(score),
                            "token": int(cand),
                            "token_str": tokenizer.decode([int(cand)]).strip(),
                            "sequence": _readable(tokenizer, filled),
                        }
                    )
                per_mask.append(candidates)
            predictions.append(per_mask[0] if len(per_mask) == 1 else per_mask)
        return predictions

    def _decode_scores(self, outputs, features, records) -> list[dict[str, float]]:
        scores = [{"masked_tokens": 0, "correct": 0, "nll": 0.0} for _ in records]
        for out, feature in zip(outputs, features):
            valid = out["gold"] != -100
            s = scores[feature["example_index"]]
            s["masked_tokens"] += int(valid.sum())
            s["correct"] += int((out["top1"][valid] == out["gold"][valid]).sum())
            s["nll"] += float(out["nll"][valid].sum())
        return scores

    def metrics(self, predictions: Sequence[Any], records: Sequence[Record]) -> dict[str, float]:
        """``masked_accuracy`` (top-1 = original token, over the chosen positions) and
        ``perplexity`` (exp of the mean loss per masked token) on the fixed eval masks."""
        n = sum(p["masked_tokens"] for p in predictions)
        if not n:
            return {}
        nll = sum(p["nll"] for p in predictions) / n
        return {
            "masked_accuracy": sum(p["correct"] for p in predictions) / n,
            "perplexity": float(math.exp(min(nll, 700.0))),
            "masked_tokens": float(n),
        }

    # ---- persistence ----------------------------------------------------------------------
    def export_hf(self, model: Any) -> Any:
        """``AutoModelForMaskedLM`` (``fill-mask`` pipeline): the encoder and the masked-LM
        head, its output projection tied to the word embeddings as in the checkpoint."""
        from .export import masked_lm_export

        return masked_lm_export(model)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "head_origin": self.head_origin}

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self.head_origin = state.get("head_origin")
        self._restored = True


def _pad(values: Sequence[Sequence[int]], fill: int, length: int, left: bool) -> torch.Tensor:
    if not left:
        return pad_sequences(values, pad_value=fill, length=length)
    out = torch.full((len(values), length), fill, dtype=torch.long)
    for i, v in enumerate(values):
        out[i, length - len(v) :] = torch.as_tensor(v, dtype=torch.long)
    return out


def _group(rows: list[Feature], *, max_length: int, wwm: bool, types: bool) -> list[Feature]:
    """Concatenate tokenized records and cut blocks of *max_length* tokens (``run_mlm``'s
    ``group_texts``); a block's ``example_index`` is the record it starts in."""
    ids: list[int] = []
    special: list[int] = []
    words: list[int] = []
    owner: list[int] = []
    offset = 0
    for index, row in enumerate(rows):
        ids += row["input_ids"]
        special += row["_special"]
        owner += [index] * len(row["input_ids"])
        if wwm:
            w = row["_words"]
            words += [x + offset if x >= 0 else -1 for x in w]
            offset += max(w, default=-1) + 1
    blocks = []
    for start in range(0, len(ids), max_length):
        block: Feature = {
            "input_ids": ids[start : start + max_length],
            "_special": special[start : start + max_length],
            "example_index": owner[start],
        }
        if types:
            block["token_type_ids"] = [0] * len(block["input_ids"])
        if wwm:
            block["_words"] = words[start : start + max_length]
        blocks.append(block)
    return blocks


_CJK_SPACE = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef]) (?=[\u3000-\u9fff\uff00-\uffef])")


def _readable(tokenizer: Any, ids: Sequence[int]) -> str:
    """The filled sequence as text: special tokens other than remaining masks dropped, and
    the spaces WordPiece decoding puts between Chinese characters removed."""
    drop = set(tokenizer.all_special_ids) - {tokenizer.mask_token_id}
    text = tokenizer.decode([i for i in ids if i not in drop])
    return _CJK_SPACE.sub("", text).strip()
