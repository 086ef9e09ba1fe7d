"""The ``token-tagging`` task (aliases ``ner``, ``pos``): one tag per word.

Records are sentences ``{"tokens", "tags", "spans", "kind", "scheme", "text", "offsets",
"where", "lines"}``. *kind* is ``entities`` (tags like ``B-PER``/``S-LOC``/``O`` in any
scheme, kept as spans so every scheme converts to the training one) or ``tags`` (plain
tags such as POS, one per word).

Words are split into subwords by the tokenizer; the first subword of each word carries
the word's label (``label_all_subwords=True`` labels the rest too, for the loss). A
sentence longer than ``max_length`` becomes overlapping windows (``stride`` subwords of
overlap); each word's prediction comes from the window where it sits most centrally, so
every word gets exactly one.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from tunekit.plugin import (
    ConfigError,
    DataError,
    Feature,
    LabelSchema,
    Record,
    Task,
    get_head,
    in_memory_rows,
    one_of,
)

from . import formats
from .schemes import (
    SCHEMES,
    allowed_transitions,
    convert,
    detect_scheme,
    is_entity_tagset,
    scheme_tags,
    spans_to_tags,
    tags_to_spans,
)


def _scheme(value: str | None) -> str | None:
    if value is None:
        return None
    low = str(value).lower().replace("-", "")
    low = {"bio": "iob2", "iob": "iob2", "bilou": "bioes", "iobes": "bioes"}.get(low, low)
    if low not in SCHEMES:
        raise ConfigError(
            f"option scheme={value!r} is not one of {', '.join(SCHEMES)} (or None: keep the data's)"
        )
    return low


def _names(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


def _tuple_of_ints(value: Any) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(int(v) for v in value)


@attrs.frozen(kw_only=True)
class TaggingConfig:
    """Options of ``token-tagging``.

    - ``scheme``: training tag scheme ``iob1`` | ``iob2`` | ``bioes`` | ``bmes`` (``None``:
      the training data's own). Any scheme is read; predictions come in this one.
    - ``tag_kind``: ``auto`` | ``entities`` (B-/I-/E-/S- tags → spans, seqeval metrics) |
      ``tags`` (plain tags such as POS, token accuracy).
    - ``token_column`` / ``tag_column``: CoNLL columns (default first and last).
    - ``tokens_field`` / ``tags_field`` / ``text_field``: JSON field names (auto-detected).
    - ``tag_names``: names of integer tags (a 🤗 dataset's ``ClassLabel`` names).
    - ``label_all_subwords``: label every subword of a word, not only the first.
    - ``stride``: subwords of overlap between windows of a long sentence.
    - ``head``: ``softmax`` (token classifier) or ``crf``; ``hidden``, ``dropout``.
    """

    scheme: str | None = attrs.field(default=None, converter=_scheme)
    tag_kind: str = attrs.field(default="auto", validator=one_of("auto", "entities", "tags"))
    token_column: int = 0
    tag_column: int = -1
    tokens_field: str | None = None
    tags_field: str | None = None
    text_field: str | None = None
    tag_names: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    label_all_subwords: bool = False
    stride: int = attrs.field(default=16, validator=attrs.validators.ge(0))
    head: str = "softmax"
    hidden: tuple[int, ...] = attrs.field(default=(), converter=_tuple_of_ints)
    dropout: float = 0.1


def _refuse_stray_tag(raw: list[dict[str, Any]]) -> None:
    """Entity data (``O`` and ``B-``/``I-`` tags) with one tag that is neither would turn the
    whole task into plain-tag mode (token accuracy, no spans): name that tag instead."""
    tags = {t for r in raw for t in r["tags"]}
    typed = {t for t in tags if is_entity_tagset([t]) and t != "O" and len(t) > 2}
    if "O" not in tags or not typed:
        return
    for r in raw:
        for i, tag in enumerate(r["tags"]):
            if not is_entity_tagset([tag]):
                lines = r.get("lines")
                where = (
                    f"{r['where'].split(' line ')[0]} line {lines[i]}"
                    if lines
                    else f"{r['where']} token {i}"
                )
                raise DataError(
                    f"{where} ({r['tokens'][i]!r}) has tag {tag!r}, which is not an "
                    f"entity tag (O, or B-/I-/E-/S- and a type), while the other tags are (e.g. "
                    f"{sorted(typed)[0]!r}). Fix the tag, or pass tag_kind='tags' to treat all "
                    f"tags as plain tags (token accuracy, no entity spans)"
                )


class TaggingTask(Task):
    """Token tagging: named entities (IOB1/IOB2/BIOES/BMES) or plain tags (POS).

    Example::

        run = tunekit.finetune("ner", data="train.conll", eval_data="dev.conll", head="crf")
        run.predict("Angela Merkel visited Paris")
        # [{'label': 'PER', 'text': 'Angela Merkel', 'start': 0, 'end': 13, 'score': 0.98},
        #  {'label': 'LOC', 'text': 'Paris', 'start': 22, 'end': 27, 'score': 0.97}]
        run.predict([["Angela", "Merkel", "visited", "Paris"]])
        # [['B-PER', 'I-PER', 'O', 'B-LOC']]
    """

    name = "token-tagging"
    head_levels = ("token",)
    aliases = ("ner", "pos", "tagging", "token-classification")
    description = (
        "one tag per word: NER (IOB1/IOB2/BIOES/BMES, optional CRF) or POS; Chinese per character"
    )
    Config = TaggingConfig
    greater_is_better = True

    def __init__(self, config: TaggingConfig | None = None) -> None:
        super().__init__(config)
        self.kind: str | None = None
        self.scheme: str | None = None

    # ---- data ---------------------------------------------------------------------------
    def read(self, source: Any, *, name: str = "data") -> list[Record]:
        if source is None:
            raise DataError(
                f"{name} is required: pass a CoNLL / JSON Lines file, a list of records or a Dataset"
            )
        if formats.is_path_like(source):
            raw = formats.read_path(source, name=name, options=self.config)
        else:
            source = in_memory_rows(source, name=name, accepts="a list", unit="sentences")
            raw = formats.read_rows(source, name=name, options=self.config)
        return self._normalise(raw, name=name)

    def _normalise(self, raw: list[dict[str, Any]], *, name: str) -> list[Record]:
        kind = self.config.tag_kind
        if kind == "auto":
            kind = "entities" if is_entity_tagset(t for r in raw for t in r["tags"]) else "tags"
            if kind == "tags":
                _refuse_stray_tag(raw)
        scheme = detect_scheme(r["tags"] for r in raw) if kind == "entities" else None
        for r in raw:
            r["kind"], r["scheme"] = kind, scheme
            r["spans"] = tags_to_spans(r["tags"]) if kind == "entities" else None
        return raw

    def setup(self, records: Sequence[Record]) -> None:
        kinds = {r["kind"] for r in records}
        if len(kinds) > 1:
            raise DataError(
                "the training data mixes entity tags (B-/I-/O) and plain tags; pass tag_kind= explicitly"
            )
        self.kind = kinds.pop()
        if self.kind == "entities":
            detected = Counter(r["scheme"] for r in records).most_common(1)[0][0]
            self.scheme = self.config.scheme or detected
            types = {s[2] for r in records for s in r["spans"]}
            labels = scheme_tags(types, self.scheme)
            self.default_metric = "f1"
        else:
            if self.config.scheme:
                raise ConfigError(
                    f"scheme={self.config.scheme!r} applies to entity tags (B-/I-/E-/S-), but the data has plain tags "
                    f"such as {records[0]['tags'][:3]}; drop scheme= or pass tag_kind='entities'"
                )
            self.scheme = None
            labels = sorted({t for r in records for t in r["tags"]})
            self.default_metric = "accuracy"
        if len(labels) < 2:
            raise DataError(
                f"the training data has only one tag ({labels[0]!r}); tagging needs at least two"
            )
        self.schema = LabelSchema(kind="single_label", labels=labels)

    def _gold_tags(self, record: Record) -> list[str]:
        """The record's tags in the training scheme (entities) or as given (plain tags)."""
        if self.kind == "entities":
            if record.get("spans") is None:
                raise DataError(
                    f"{record['where']} has plain tags, but the model tags entities (B-/I-/O)"
                )
            return spans_to_tags(record["spans"], len(record["tokens"]), self.scheme)
        return list(record["tags"])

    def _tag_ids(self, record: Record) -> list[int]:
        label2id = self.require_schema().label2id
        ids = []
        for i, tag in enumerate(self._gold_tags(record)):
            if tag not in label2id:
                lines = record.get("lines")
                where = (
                    f"{record['where'].split(' line ')[0]} line {lines[i]}"
                    if lines
                    else f"{record['where']} token {i}"
                )
                what = (
                    f"entity type {tag.split('-', 1)[-1]!r}"
                    if self.kind == "entities"
                    else f"tag {tag!r}"
                )
                known = (
                    sorted({t.split("-", 1)[-1] for t in label2id if t != "O"})
                    if self.kind == "entities"
                    else list(label2id)
                )
                raise DataError(
                    f"{where}: {what} (token {record['tokens'][i]!r}) was not seen in the training data; "
                    f"known: {', '.join(known)}. Fix the tag or add examples of it to the training data."
                )
            ids.append(label2id[tag])
        return ids

    def parse_inputs(self, inputs: Any) -> list[Record]:
        if isinstance(inputs, (str, Mapping)):
            inputs = [inputs]
        records = []
        for i, item in enumerate(inputs):
            where = f"predict input {i}"
            if isinstance(item, Mapping):
                item = item.get("tokens", item.get("text"))
            if isinstance(item, str):
                if not item.strip():
                    raise DataError(f"{where} is an empty text")
                words, offsets = formats.split_words(item)
                records.append(
                    {"tokens": words, "text": item, "offsets": offsets, "raw": True, "where": where}
                )
            elif isinstance(item, (list, tuple)) and all(isinstance(t, str) for t in item):
                if not item:
                    raise DataError(f"{where} is an empty token list")
                records.append(
                    {
                        "tokens": list(item),
                        "text": None,
                        "offsets": None,
                        "raw": False,
                        "where": where,
                    }
                )
            else:
                raise DataError(
                    f"{where} is {item!r:.60}; pass a text, a list of tokens or {{'tokens': [...]}}"
                )
        return records

    # ---- features -------------------------------------------------------------------------
    def encode(
        self, records: Sequence[Record], tokenizer: Any, *, max_length: int, with_labels: bool
    ) -> list[Feature]:
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                "token-tagging needs a fast tokenizer (word_ids()); this model has a slow one"
            )
        stride = max(0, min(self.config.stride, max_length // 4))
        enc = tokenizer(
            [r["tokens"] for r in records],
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        mapping = enc["overflow_to_sample_mapping"]
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        ids_cache: dict[int, list[int]] = {}
        seen_window: set[int] = set()
        features = []
        for j, example in enumerate(mapping):
            record = records[example]
            word_ids = enc.word_ids(j)
            offsets = enc["offset_mapping"][j]
            first_window = example not in seen_window
            seen_window.add(example)
            starts, words = [0] * len(word_ids), []
            previous = None
            for k, w in enumerate(word_ids):
                if (
                    w is not None
                    and w != previous
                    and (previous is not None or first_window or offsets[k][0] == 0)
                ):
                    starts[k] = 1
                    words.append((k, w))
                previous = w
            n = len(record["tokens"])
            feat: Feature = {key: enc[key][j] for key in keys}
            feat.update(
                example_index=int(example),
                word_starts=starts,
                sentence_start=int(any(w == 0 for _, w in words)),
                sentence_end=int(any(w == n - 1 for _, w in words)),
                _words=words,
            )
            if with_labels:
                if example not in ids_cache:
                    ids_cache[example] = self._tag_ids(record)
                tag_ids = ids_cache[example]
                all_sub = self.config.label_all_subwords
                feat["labels"] = [
                    tag_ids[w] if w is not None and (starts[k] or all_sub) else -100
                    for k, w in enumerate(word_ids)
                ]
            features.append(feat)
        return features

    # ---- model ----------------------------------------------------------------------------
    def build_head(self, backbone: Any) -> Any:
        schema = self.require_schema()
        head_cls = get_head(self.config.head, task=self)  # token-level heads only
        options: dict[str, Any] = {"hidden": self.config.hidden, "dropout": self.config.dropout}
        if "allowed" in inspect.signature(head_cls.__init__).parameters and self.kind == "entities":
            matrix, start, end = allowed_transitions(schema.labels, self.scheme)
            options.update(allowed=matrix, allowed_start=start, allowed_end=end)
        return head_cls(backbone.hidden_size, schema.num_labels, **options)

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        if "nll" in outputs:
            return outputs["nll"].mean()
        logits = outputs["logits"].float()
        labels = batch["labels"].long()[:, : logits.shape[1]]
        if not bool((labels != -100).any()):
            return logits.sum() * 0.0  # a batch of continuation-only windows
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
        )

    def batch_outputs(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        kept = {"logits": outputs["logits"].float()}
        if "tags" in outputs:
            kept["tags"] = outputs["tags"]
        return kept

    # ---- predictions ----------------------------------------------------------------------
    def word_predictions(self, outputs, features, records) -> list[tuple[list[int], list[float]]]:
        """Per record: one tag id and score per word, each from the window where the word sits
        most centrally (its first subword farthest from the window's edges)."""
        best: list[dict[int, tuple[int, int, float]]] = [{} for _ in records]
        for out, feat in zip(outputs, features):
            length = len(feat["input_ids"])
            logits = np.asarray(out["logits"], dtype=np.float64)
            tags = out.get("tags")
            chosen = best[feat["example_index"]]
            for k, w in feat["_words"]:
                centrality = min(k, length - 1 - k)
                if w in chosen and chosen[w][0] >= centrality:
                    continue
                row = logits[k] - logits[k].max()
                probs = np.exp(row) / np.exp(row).sum()
                tag = (
                    int(tags[k]) if tags is not None and int(tags[k]) >= 0 else int(probs.argmax())
                )
                chosen[w] = (centrality, tag, float(probs[tag]))
        labels = self.require_schema().labels
        fallback = labels.index("O") if "O" in labels else 0
        result = []
        for record, chosen in zip(records, best):
            n = len(record["tokens"])
            ids = [
                chosen[w][1] if w in chosen else fallback for w in range(n)
            ]  # a word with no subword: fallback
            scores = [chosen[w][2] if w in chosen else 0.0 for w in range(n)]
            result.append((ids, scores))
        return result

    def decode(self, outputs, features, records, **options: Any) -> list[Any]:
        labels = self.require_schema().labels
        predictions = []
        for record, (ids, scores) in zip(
            records, self.word_predictions(outputs, features, records)
        ):
            tags = [labels[i] for i in ids]
            if self.kind == "entities":
                tags = convert(tags, self.scheme)  # repair invalid sequences (I- after O...)
            if not record.get("raw"):
                predictions.append(tags)
                continue
            text, offsets = record["text"], record["offsets"]
            if self.kind == "entities":
                predictions.append(
                    [
                        {
                            "label": type_,
                            "text": text[offsets[s][0] : offsets[e - 1][1]],
                            "start": offsets[s][0],
                            "end": offsets[e - 1][1],
                            "score": float(np.mean(scores[s:e])),
                        }
                        for s, e, type_ in tags_to_spans(tags)
                    ]
                )
            else:
                predictions.append(
                    [
                        {"label": tag, "text": text[a:b], "start": a, "end": b, "score": score}
                        for tag, (a, b), score in zip(tags, offsets, scores)
                    ]
                )
        return predictions

    def metrics(self, predictions: Sequence[Any], records: Sequence[Record]) -> dict[str, float]:
        gold = [self._gold_tags(r) for r in records]
        total = sum(len(g) for g in gold)
        correct = sum(p == g for pred, tags in zip(predictions, gold) for p, g in zip(pred, tags))
        metrics = {"accuracy": correct / total if total else 0.0}
        if self.kind == "entities":
            metrics.update(
                entity_metrics(
                    [r["spans"] for r in records], [tags_to_spans(p) for p in predictions]
                )
            )
        return metrics

    # ---- export ---------------------------------------------------------------------------
    def export_postprocess(self, model: Any) -> dict[str, Any] | None:
        """ONNX export (``run.export(dir, format="onnx")``): a CRF head's graph gives the
        per-token emissions; its constrained Viterbi decoding runs after the graph as the
        ``crf-viterbi`` step of :mod:`tunekit.onnx_postprocess` with these arrays.
        ``None`` for the softmax head (everything is in the graph)."""
        decoding = getattr(model.head, "decoding_arrays", None)
        if decoding is None:
            return None
        return {"name": "crf-viterbi", "produces": ["tags"], "arrays": decoding()}

    def export_hf(self, model: Any) -> Any:
        """``AutoModelForTokenClassification`` (``token-classification`` pipeline); needs the
        ``softmax`` head with no hidden layer. A CRF head is refused: its Viterbi decoding
        over word-to-word transitions has no transformers equivalent."""
        from tunekit.plugin import (
            ExportError,
            HFExport,
            token_classification,
            token_classification_check,
        )

        what = f"task {self.name!r}"
        if hasattr(model.head, "crf"):
            raise ExportError(
                f"{what}: the CRF head decodes whole sentences (Viterbi over learned tag transitions), which "
                f"transformers' token classifiers cannot do, so the run has no exact export; train with "
                f"head='softmax' to export (or save a bundle and predict with tunekit)"
            )
        labels = self.require_schema().labels
        hf = token_classification(model, labels=labels, what=what)
        notes = (
            "tunekit tags each word by its first subword (use aggregation_strategy='first', or the first "
            "sub-token of each word with aggregation_strategy='none')"
        )
        if self.kind == "entities":
            notes += (
                f" and repairs invalid {self.scheme} sequences (an I- tag after O...), which the pipeline does "
                f"not; its entity grouping understands IOB2 tags (B-/I-) only"
            )
        return HFExport(
            model=hf,
            pipeline="token-classification",
            pipeline_options={"aggregation_strategy": "first"} if self.scheme == "iob2" else {},
            notes=notes + ".",
            check=token_classification_check(model, hf),
        )

    # ---- persistence ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {**super().state(), "kind": self.kind, "scheme": self.scheme}

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self.kind, self.scheme = state.get("kind"), state.get("scheme")
        self.default_metric = "f1" if self.kind == "entities" else "accuracy"


def _iob2(spans: Sequence[tuple[int, int, str]], length: int) -> list[str]:
    # seqeval needs typed tags: untyped spans (word segmentation) become type "_"
    return spans_to_tags([(s, e, t or "_") for s, e, t in spans], length, "iob2")


def entity_metrics(
    gold: Sequence[Sequence[tuple[int, int, str]]], pred: Sequence[Sequence[tuple[int, int, str]]]
) -> dict[str, float]:
    """seqeval entity-level precision / recall / F1 (micro) and ``<TYPE>_precision`` /
    ``_recall`` / ``_f1`` per entity type, from token spans."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    lengths = [max([e for _, e, _ in g] + [e for _, e, _ in p] + [1]) for g, p in zip(gold, pred)]
    y_true = [_iob2(g, n) for g, n in zip(gold, lengths)]
    y_pred = [_iob2(p, n) for p, n in zip(pred, lengths)]
    out = {
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
    }
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    for type_, row in report.items():
        if type_.endswith(" avg"):
            continue
        for key in ("precision", "recall", "f1"):
            out[f"{type_}_{key}"] = float(row["f1-score" if key == "f1" else key])
    return out
