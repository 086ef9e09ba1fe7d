"""The ``qa`` task (aliases ``extractive-qa``, ``squad``): extractive question answering.

A question and its context are one input, ``[CLS] question [SEP] context [SEP]``; a
context longer than ``max_length`` becomes overlapping windows (``doc_stride`` tokens of
overlap) through the fast tokenizer's ``return_overflowing_tokens`` with
``truncation="only_second"``, so the question is in every window. A span head predicts a
start and an end logit per token; training targets are the first gold answer's tokens, or
the ``[CLS]`` token in windows that do not hold the whole answer (and for unanswerable
questions). :mod:`tunekit_qa.decoding` turns the logits back into character spans of the
original context.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from tunekit.plugin import ConfigError, DataError, Feature, Record, Task, one_of

from . import formats
from .decoding import decode_question
from .metrics import best_null_threshold, is_chinese, score_answer
from .run import QARun


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ConfigError(f"option {attribute.name}={value!r} must be > 0")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value < 0:
        raise ConfigError(f"option {attribute.name}={value!r} must be >= 0")


@attrs.frozen(kw_only=True)
class QAConfig:
    """Options of ``qa``.

    - ``doc_stride``: tokens of overlap between the windows of a long context (at most
      half of the room the question leaves in ``max_length``).
    - ``max_answer_length``: the longest answer, in tokens, decoding considers.
    - ``n_best_size``: spans kept per window and per question (n-best list, scores).
    - ``allow_unanswerable``: SQuAD 2.0 — questions may have no answer; decoding
      predicts an empty answer when the null score beats the best span by more than
      ``null_threshold`` (tune it on labelled data with ``run.tune_threshold(dev)``).
    - ``language``: ``auto`` (per question: Chinese contexts get CMRC character-level
      metrics), ``en`` (SQuAD metrics) or ``zh`` (CMRC metrics).
    - ``fix_answer_start``: when an ``answer_start`` does not point at its answer text,
      use the occurrence of the text nearest to it instead of raising ``DataError``.
    - ``dropout``: dropout before the span head's linear layer.
    """

    doc_stride: int = attrs.field(default=64, validator=_non_negative)
    max_answer_length: int = attrs.field(default=30, validator=_positive)
    n_best_size: int = attrs.field(default=20, validator=_positive)
    allow_unanswerable: bool = False
    null_threshold: float = 0.0
    language: str = attrs.field(default="auto", validator=one_of("auto", "en", "zh"))
    fix_answer_start: bool = False
    dropout: float = 0.0


class QATask(Task):
    """Extractive question answering: the answer is a span of the context.

    Example::

        run = tunekit.finetune(task="qa", data="train-v1.1.json", eval_data="dev-v1.1.json")
        run.predict({"question": "Where was Ada born?", "context": "Ada was born in London."})
        # {'answer': 'London', 'score': 0.97, 'start': 16, 'end': 22}

        v2 = tunekit.finetune(task="squad", data="train-v2.0.json", allow_unanswerable=True)
        v2.tune_threshold("dev-v2.0.json")   # the null-score threshold that maximises F1
    """

    name = "qa"
    head_levels = ("span",)
    aliases = ("extractive-qa", "squad")
    description = (
        "extractive question answering (SQuAD 1.1/2.0, CMRC): windows with doc_stride, n-best "
        "span decoding, unanswerable questions, EM/F1"
    )
    Config = QAConfig
    default_metric = "f1"
    greater_is_better = True
    run_class = QARun

    def __init__(self, config: QAConfig | None = None) -> None:
        super().__init__(config)
        self.null_threshold = float(self.config.null_threshold)

    # ---- data ---------------------------------------------------------------------------
    def read(self, source: Any, *, name: str = "data") -> list[Record]:
        rows = formats.read_source(source, name=name)
        return formats.normalise(
            rows,
            fix_answer_start=self.config.fix_answer_start,
            allow_unanswerable=self.config.allow_unanswerable,
        )

    def stratify_key(self, record: Record) -> Any:
        return bool(record["answers"])  # keep the answerable / unanswerable mix in eval

    def parse_inputs(self, inputs: Any) -> list[Record]:
        if isinstance(inputs, Mapping) or (
            isinstance(inputs, tuple)
            and len(inputs) == 2
            and all(isinstance(x, str) for x in inputs)
        ):
            inputs = [inputs]
        records = []
        for i, item in enumerate(inputs):
            where = f"predict input {i}"
            if isinstance(item, (tuple, list)) and len(item) == 2:
                item = {"question": item[0], "context": item[1]}
            if not isinstance(item, Mapping):
                raise DataError(
                    f"{where} is {item!r:.60}; pass {{'question': ..., 'context': ...}} or a (question, context) pair"
                )
            question, context = item.get("question"), item.get("context")
            if not isinstance(question, str) or not question.strip():
                raise DataError(f"{where} has no question (got {question!r:.40})")
            if not isinstance(context, str) or not context.strip():
                raise DataError(f"{where} has an empty context; give the passage to search")
            records.append(
                {
                    "id": str(item.get("id", i)),
                    "question": question,
                    "context": context,
                    "answers": [],
                    "where": where,
                }
            )
        return records

    # ---- features -------------------------------------------------------------------------
    def encode(
        self, records: Sequence[Record], tokenizer: Any, *, max_length: int, with_labels: bool
    ) -> list[Feature]:
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                "qa needs a fast tokenizer (offset mappings); this model has a slow one"
            )
        if tokenizer.padding_side != "right":
            raise ConfigError(
                "qa puts the question first and truncates the context; it needs a tokenizer that pads on the right"
            )
        # as run_qa: leading spaces of a question waste room (some tokenizers keep them)
        questions = [r["question"].lstrip() for r in records]
        specials = tokenizer.num_special_tokens_to_add(pair=True)
        lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
        groups: dict[int, list[int]] = {}
        for i, (record, n) in enumerate(zip(records, lengths)):
            room = max_length - specials - n
            if room < 1:
                raise DataError(
                    f"{record['where']}: the question is {n} tokens long; with max_length={max_length} no room is "
                    f"left for the context. Raise max_length (to at least {n + specials + 32}) or shorten the question"
                )
            groups.setdefault(min(self.config.doc_stride, room // 2), []).append(i)
        per_record: dict[int, list[Feature]] = {}
        for stride, indices in groups.items():
            enc = tokenizer(
                [questions[i] for i in indices],
                [records[i]["context"] for i in indices],
                truncation="only_second",
                max_length=max_length,
                stride=stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
            keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
            for j, local in enumerate(enc["overflow_to_sample_mapping"]):
                example = indices[local]
                ids = enc["input_ids"][j]
                sequence_ids = enc.sequence_ids(j)
                offsets = [
                    tuple(o) if sequence_ids[k] == 1 else None
                    for k, o in enumerate(enc["offset_mapping"][j])
                ]
                cls_id = tokenizer.cls_token_id
                cls = ids.index(cls_id) if cls_id in ids else 0
                feature: Feature = {key: enc[key][j] for key in keys}
                feature.update(example_index=int(example), _offsets=offsets, _cls=cls)
                if with_labels:
                    feature["labels"] = list(_positions(records[example], offsets, cls))
                per_record.setdefault(example, []).append(feature)
        return [f for i in range(len(records)) for f in per_record[i]]

    # ---- model ----------------------------------------------------------------------------
    def build_head(self, backbone: Any) -> Any:
        from .heads import SpanHead

        return SpanHead(backbone.hidden_size, dropout=self.config.dropout)

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        labels = batch["labels"].long()
        start = F.cross_entropy(outputs["start_logits"].float(), labels[:, 0])
        end = F.cross_entropy(outputs["end_logits"].float(), labels[:, 1])
        return (start + end) / 2

    def batch_outputs(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"start_logits": outputs["start_logits"], "end_logits": outputs["end_logits"]}

    # ---- predictions ----------------------------------------------------------------------
    def decode(self, outputs, features, records, **options: Any) -> list[Any]:
        known = {"top_k", "null_threshold", "max_answer_length", "n_best_size"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"unknown predict option(s) {', '.join(unknown)} for task 'qa'; use {', '.join(sorted(known))}"
            )
        for key in ("top_k", "max_answer_length", "n_best_size"):
            value = options.get(key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ConfigError(
                    f"predict option {key}={value!r} must be a whole number (int) >= 1; e.g. "
                    f"{key}=3, or leave it out"
                )
        threshold = options.get("null_threshold")
        if threshold is not None and (
            not isinstance(threshold, (int, float)) or isinstance(threshold, bool)
        ):
            raise ConfigError(
                f"predict option null_threshold={threshold!r} must be a number (the score margin "
                f"an empty answer needs); e.g. null_threshold=0.0, or leave it out"
            )
        windows: list[list[dict[str, Any]]] = [[] for _ in records]
        for out, feat in zip(outputs, features):
            windows[feat["example_index"]].append(
                {
                    "start_logits": out["start_logits"],
                    "end_logits": out["end_logits"],
                    "offsets": feat["_offsets"],
                    "cls_index": feat["_cls"],
                }
            )
        threshold = options.get("null_threshold")
        return [
            decode_question(
                w,
                r["context"],
                max_answer_length=int(
                    options.get("max_answer_length") or self.config.max_answer_length
                ),
                n_best_size=int(options.get("n_best_size") or self.config.n_best_size),
                allow_unanswerable=self.config.allow_unanswerable,
                null_threshold=self.null_threshold if threshold is None else float(threshold),
                top_k=int(options.get("top_k") or 1),
            )
            for w, r in zip(windows, records)
        ]

    def is_chinese(self, record: Record) -> bool:
        if self.config.language != "auto":
            return self.config.language == "zh"
        return is_chinese(record["context"])

    def metrics(self, predictions: Sequence[Any], records: Sequence[Record]) -> dict[str, float]:
        """``exact`` and ``f1`` (in [0, 1]); with unanswerable questions also
        ``has_answer_f1``, ``no_answer_accuracy`` and, when decoding allows unanswerable
        answers, ``best_f1`` / ``best_exact`` at ``best_null_threshold`` (the threshold that
        maximises F1 on these records — what :meth:`QARun.tune_threshold` applies)."""
        if not records:
            return {}
        rows = []
        for pred, record in zip(predictions, records):
            pred = pred[0] if isinstance(pred, list) else pred
            golds = [a["text"] for a in record["answers"]]
            chinese = self.is_chinese(record)
            exact, f1 = score_answer(golds, pred["answer"], chinese=chinese)
            rows.append((exact, f1, bool(golds), pred, chinese))
        out = {
            "exact": float(np.mean([r[0] for r in rows])),
            "f1": float(np.mean([r[1] for r in rows])),
        }
        if any(not r[2] for r in rows):
            has = [r for r in rows if r[2]]
            out["has_answer_f1"] = float(np.mean([r[1] for r in has])) if has else 0.0
            out["no_answer_accuracy"] = float(np.mean([r[0] for r in rows if not r[2]]))
        if self.config.allow_unanswerable:
            out.update(self.threshold_search(predictions, records))
        return out

    def threshold_search(
        self, predictions: Sequence[Any], records: Sequence[Record]
    ) -> dict[str, float]:
        """The null threshold that maximises F1 (and the one for exact match) on labelled
        *records*, from predictions that carry ``null_score_diff`` and ``best_span``."""
        diffs, answerable, span_f1, span_exact = [], [], [], []
        for pred, record in zip(predictions, records):
            pred = pred[0] if isinstance(pred, list) else pred
            golds = [a["text"] for a in record["answers"]]
            span = pred.get("best_span")
            exact, f1 = (
                score_answer(golds, span["answer"], chinese=self.is_chinese(record))
                if span is not None
                else (0.0, 0.0)
            )
            diffs.append(pred["null_score_diff"] if span is not None else np.inf)
            answerable.append(bool(golds))
            span_f1.append(f1)
            span_exact.append(exact)
        finite = [d for d in diffs if np.isfinite(d)] or [0.0]
        diffs = [d if np.isfinite(d) else max(finite) + 1.0 for d in diffs]
        threshold, best_f1 = best_null_threshold(diffs, answerable, span_f1)
        exact_threshold, best_exact = best_null_threshold(diffs, answerable, span_exact)
        return {
            "best_f1": best_f1,
            "best_exact": best_exact,
            "best_null_threshold": threshold,
            "best_exact_null_threshold": exact_threshold,
        }

    # ---- export ---------------------------------------------------------------------------
    def export_hf(self, model: Any) -> Any:
        """``AutoModelForQuestionAnswering`` (``question-answering``): the span head's
        ``qa_outputs`` (``hidden → 2``, start then end) is transformers' ``qa_outputs``
        weight for weight. transformers' model does not mask padding (the span head puts
        :data:`~tunekit_qa.heads.PADDING_LOGIT` there); post-processing never reads those
        positions, so the check compares the logits of the real tokens."""
        from transformers import AutoModelForQuestionAnswering

        from tunekit.plugin import ExportError, HFExport, encoder_model

        from .heads import SpanHead

        what = f"task {self.name!r}"
        head = model.head
        if type(head) is not SpanHead or not isinstance(head.qa_outputs, torch.nn.Linear):
            raise ExportError(
                f"{what}: the head is {type(head).__name__}, not the span head (dropout → linear hidden → 2) that "
                f"transformers' *ForQuestionAnswering models compute, so there is no exact export; train with the "
                f"qa task's own head"
            )
        linear = head.qa_outputs
        hf = encoder_model(AutoModelForQuestionAnswering, model, num_labels=2)
        target = getattr(hf, "qa_outputs", None)
        if (
            not isinstance(target, torch.nn.Linear)
            or target.weight.shape != linear.weight.shape
            or target.bias is None
            or linear.bias is None
        ):
            raise ExportError(
                f"{what}: {type(hf).__name__} (model type {hf.config.model_type!r}) has no linear qa_outputs "
                f"{linear.in_features} → 2 tunekit can map the span head onto; export supports models whose "
                f"question-answering head is one linear layer (BERT, RoBERTa, ERNIE, MiniLM...)"
            )
        with torch.no_grad():  # row 0 is the start logit, row 1 the end logit, in both
            target.weight.copy_(linear.weight)
            target.bias.copy_(linear.bias)

        def check(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            keep = batch["attention_mask"].bool()
            ours = model(batch)
            theirs = hf(**model.encoder_inputs(batch))
            return (
                torch.stack([ours["start_logits"][keep], ours["end_logits"][keep]]).float(),
                torch.stack([theirs.start_logits[keep], theirs.end_logits[keep]]).float(),
            )

        notes = (
            f"tunekit decodes every span of at most max_answer_length={self.config.max_answer_length} tokens in each "
            f"doc_stride window (doc_stride={self.config.doc_stride}, at most half the room the question leaves) and "
            f"ranks the spans of all windows by start + end logit, as run_qa's postprocess_qa_predictions does. "
            f"transformers 5 has no question-answering pipeline: load the model with AutoModelForQuestionAnswering "
            f"and post-process its start/end logits. transformers 4's pipeline (pass max_seq_len=<the run's "
            f"max_length>, doc_stride, max_answer_len, align_to_words=False) ranks spans by start x end probability "
            f"normalised within each window and adds up the probabilities of candidates with the same text, so "
            f"on contexts of several windows it can answer differently; its score is not "
            f"tunekit's (a softmax over the n-best list)"
        )
        if self.config.allow_unanswerable:
            notes += (
                f"; unanswerable questions: tunekit answers '' when the null score beats the best span by more than "
                f"null_threshold={self.null_threshold:g} (run_qa: null_score_diff_threshold; the pipeline: "
                f"handle_impossible_answer=True compares probabilities instead)"
            )
        return HFExport(
            model=hf,
            pipeline="question-answering",
            pipeline_options={
                "doc_stride": self.config.doc_stride,
                "max_answer_len": self.config.max_answer_length,
                "align_to_words": False,
                **({"handle_impossible_answer": True} if self.config.allow_unanswerable else {}),
            },
            notes=notes + ".",
            check=check,
        )

    # ---- persistence ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {**super().state(), "null_threshold": self.null_threshold}

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self.null_threshold = float(state.get("null_threshold", self.config.null_threshold))


def _positions(record: Record, offsets: Sequence[Any], cls: int) -> tuple[int, int]:
    """Start and end token of the record's first answer in one window, or ``(cls, cls)``
    when the window does not hold the whole answer (or there is none) — the labelling of
    transformers' ``run_qa`` ``prepare_train_features``."""
    if not record["answers"]:
        return cls, cls
    answer = record["answers"][0]
    start_char = answer["start"]
    end_char = start_char + len(answer["text"])
    context = [k for k, o in enumerate(offsets) if o is not None]
    first, last = context[0], context[-1]
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return cls, cls
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1
