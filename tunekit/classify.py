"""``classify``: single-label, multi-label and regression over single texts.

Records are ``{"text": str, "label": ...}``. The problem kind is detected from the labels
(lists → multi-label; non-integer numbers → regression; anything else → single-label)
or given with ``problem=``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, cast

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from .config import _one_of, non_negative
from .data import (
    LABEL_COLUMNS,
    TEXT_COLUMNS,
    find_column,
    is_missing,
    is_path,
    read_table,
    text_inputs,
)
from .errors import ConfigError, DataError
from .export import PROBLEM_TYPES
from .head import Head
from .hookspecs import hookimpl
from .labels import LabelKind, LabelSchema
from .metrics import classification_metrics, multilabel_metrics, regression_metrics
from .task import Feature, Record, Task


def _tuple_of_ints(value: Any) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


@attrs.frozen(kw_only=True)
class ClassifyConfig:
    """Options of ``classify``.

    - ``text_column`` / ``label_column``: column names (auto-detected from common names).
    - ``problem``: ``auto`` | ``single_label`` | ``multi_label`` | ``regression``.
    - ``label_separator``: splits string labels for multi-label (``"sports|politics"``).
    - ``class_weights``: ``None``, ``"balanced"`` or ``{label: weight}``.
    - ``long_text``: ``truncate`` (default) or ``chunk`` (overlapping windows of
      ``max_length`` with ``stride`` tokens of overlap; logits averaged per text).
    - ``head`` (``linear`` | ``mlp`` | any registered head), ``hidden``, ``dropout``,
      ``activation``, ``pooling`` (``mean`` | ``cls`` | ``max``).
    - ``threshold``: probability above which a multi-label label is predicted.
    """

    text_column: str | None = None
    label_column: str | None = None
    problem: str = attrs.field(
        default="auto", validator=_one_of("auto", "single_label", "multi_label", "regression")
    )
    label_separator: str = "|"
    class_weights: str | Mapping[str, float] | None = None
    long_text: str = attrs.field(default="truncate", validator=_one_of("truncate", "chunk"))
    stride: int = attrs.field(default=32, validator=non_negative)
    head: str = "linear"
    hidden: tuple[int, ...] = attrs.field(default=(512,), converter=_tuple_of_ints)
    dropout: float = 0.1
    activation: str = "relu"
    pooling: str = attrs.field(default="mean", validator=_one_of("mean", "cls", "max"))
    threshold: float = 0.5


class ClassifyTask(Task):
    """Text classification and regression.

    Example::

        run = tunekit.finetune(task="classify", data="reviews.csv", epochs=3)
        run.predict(["what a wonderful film"])
        # [{'label': 'pos', 'score': 0.97, 'probabilities': {'neg': 0.03, 'pos': 0.97}}]
    """

    name = "classify"
    aliases = ("text-classification", "sentiment", "classification")
    description = "single-label, multi-label or regression on single texts"
    Config = ClassifyConfig

    def __init__(self, config: ClassifyConfig | None = None) -> None:
        super().__init__(config)
        self.weights: list[float] | None = None
        #: the training labels were integers: predictions give them back as integers
        self.int_labels = False

    # ---- data ---------------------------------------------------------------------------
    def read(self, source: Any, *, name: str = "data") -> list[Record]:
        rows = read_table(source, name=name, tuple_columns=("text", "label"))
        if is_path(source):
            name = f"{name} file {os.fspath(source)}"  # errors below name the file
        columns = list(rows[0].keys())
        text_col = find_column(
            columns,
            self.config.text_column,
            TEXT_COLUMNS,
            role="text",
            name=name,
            option="text_column",
        )
        label_col = find_column(
            columns,
            self.config.label_column,
            LABEL_COLUMNS,
            role="label",
            name=name,
            option="label_column",
        )
        records = []
        self._split_strings = self._labels_are_joined(rows, label_col)
        for i, row in enumerate(rows):
            text = row.get(text_col)
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    f"{name} record {i} has an empty or non-text value in column {text_col!r} ({text!r}); "
                    f"remove the record or fill in its text"
                )
            label = row.get(label_col)
            if is_missing(label) or (isinstance(label, str) and not label.strip()):
                raise DataError(
                    f"{name} record {i} has no label in column {label_col!r}; remove it or fill in the label "
                    f"(predict() takes unlabelled texts)"
                )
            records.append({"text": text, "label": self._normalise_label(label, i, name)})
        if self.schema is None:
            # training data: were its labels integers? predictions give them back so
            ints = all(
                isinstance(row.get(label_col), (int, np.integer))
                and not isinstance(row.get(label_col), (bool, np.bool_))
                for row in rows
            )
            self._int_labels = ints and getattr(self, "_int_labels", True)
        return records

    def _labels_are_joined(self, rows: Sequence[Mapping[str, Any]], label_col: str) -> bool:
        """Whether string labels hold several labels joined by ``label_separator`` (``a|b``):
        with ``problem="auto"``, when any training label contains it (a CSV cannot hold
        lists), or when the model was trained multi-label."""
        if self.config.problem != "auto":
            return False
        if self.schema is not None:
            return self.schema.kind == "multi_label"
        separator = self.config.label_separator
        return any(
            isinstance(row.get(label_col), str) and separator in row[label_col] for row in rows
        )

    def _normalise_label(self, label: Any, index: int, name: str) -> Any:
        problem = self.config.problem
        if not isinstance(label, (str, int, float, bool, np.generic, list, tuple, np.ndarray)):
            raise DataError(
                f"{name} record {index} has label {label!r:.80}, a {type(label).__name__}; a label "
                f"is a string or a number (a list of them for multi-label). Put the label itself "
                f"in the column, e.g. 'pos'"
            )
        if problem == "multi_label" or (
            problem == "auto"
            and (
                isinstance(label, (list, tuple, np.ndarray))
                or (isinstance(label, str) and getattr(self, "_split_strings", False))
            )
        ):
            if isinstance(label, str):
                return [p.strip() for p in label.split(self.config.label_separator) if p.strip()]
            if not isinstance(label, (list, tuple, np.ndarray)):
                raise DataError(
                    f"{name} record {index} has label {label!r:.80}, a {type(label).__name__}; "
                    f"problem='multi_label' needs a list of labels, e.g. [{str(label)!r}], or a "
                    f"string joined with {self.config.label_separator!r}"
                )
            bad = [v for v in label if not isinstance(v, (str, int, float, bool, np.generic))]
            if bad:
                raise DataError(
                    f"{name} record {index} has label {label!r:.80} holding {bad[0]!r:.40}, a "
                    f"{type(bad[0]).__name__}; a multi-label label is a list of strings or numbers"
                )
            return [str(v) for v in label]
        if problem == "regression":
            try:
                if isinstance(label, (list, tuple)):
                    raise TypeError("a list is not a number")
                return float(label)
            except (TypeError, ValueError):
                raise DataError(
                    f"{name} record {index} has label {label!r}, but problem='regression' needs numbers"
                ) from None
        if isinstance(label, (bool, np.bool_)):
            return str(label)
        if isinstance(label, (float, np.floating)) and float(label).is_integer():
            return str(int(label))
        if isinstance(label, (int, np.integer)):
            return str(int(label))
        return label if isinstance(label, str) else label

    def _kind(self, records: Sequence[Record]) -> LabelKind:
        if self.config.problem != "auto":
            # the field's validator admits only "auto" and the three kinds
            return cast(LabelKind, self.config.problem)
        labels = [r["label"] for r in records]
        if any(isinstance(v, list) for v in labels):
            return "multi_label"
        if any(isinstance(v, float) for v in labels):
            return "regression"
        return "single_label"

    def setup(self, records: Sequence[Record]) -> None:
        kind = self._kind(records)
        labels = [r["label"] for r in records]
        if kind == "regression":
            bad = [i for i, v in enumerate(labels) if not isinstance(v, (int, float))]
            if bad:
                raise DataError(
                    f"record {bad[0]} has label {labels[bad[0]]!r}, but regression needs numbers"
                )
        if kind == "single_label" and any(isinstance(v, float) for v in labels):
            raise DataError(
                "labels mix numbers and categories; pass problem='regression' or 'single_label'"
            )
        self.schema = LabelSchema.from_values(labels, kind=kind)
        self.int_labels = kind == "single_label" and getattr(self, "_int_labels", False)
        if kind == "regression" and self.schema.value_range is not None:
            lo, hi = self.schema.value_range
            if lo == hi:
                raise DataError(
                    f"every training label is {lo!r}: regression needs labels that vary (the "
                    f"model would learn nothing). Check the label column, or pass "
                    f"problem='single_label' if these are categories"
                )
        if kind != "regression" and self.schema.num_labels < 2 and kind == "single_label":
            raise DataError(
                f"the training data has only one label ({self.schema.labels[0]!r}); classification needs at least two"
            )
        self.weights = self._class_weights(records)

    def _class_weights(self, records: Sequence[Record]) -> list[float] | None:
        cw = self.config.class_weights
        schema = self.require_schema()
        if cw is None:
            return None
        if schema.kind == "regression":
            raise ConfigError("class_weights cannot be used with regression")
        if cw == "balanced":
            if schema.kind == "multi_label":
                pos = np.array([schema.encode_multi(r["label"]) for r in records]).sum(0)
                return [float((len(records) - p) / max(p, 1)) for p in pos]  # BCE pos_weight
            from sklearn.utils.class_weight import compute_class_weight

            ids = np.array([schema.id_of(r["label"]) for r in records])
            present = np.unique(ids)
            w = compute_class_weight("balanced", classes=present, y=ids)
            full = np.ones(schema.num_labels)
            full[present] = w
            return [float(x) for x in full]
        if isinstance(cw, Mapping):
            unknown = [k for k in cw if str(k) not in schema.labels]
            if unknown:
                raise ConfigError(
                    f"class_weights names labels not in the data: {unknown}; labels: {list(schema.labels)}"
                )
            return [float(cw.get(label, cw.get(_maybe_int(label), 1.0))) for label in schema.labels]
        raise ConfigError(f"class_weights={cw!r}: use None, 'balanced' or a dict {{label: weight}}")

    def stratify_key(self, record: Record) -> Any:
        return record["label"] if isinstance(record["label"], str) else None

    def parse_inputs(self, inputs: Any) -> list[Record]:
        return text_inputs(inputs)

    def encode(
        self, records: Sequence[Record], tokenizer: Any, *, max_length: int, with_labels: bool
    ) -> list[Feature]:
        texts = [r["text"] for r in records]
        chunk = self.config.long_text == "chunk"
        enc = tokenizer(
            texts,
            truncation=True,
            max_length=max_length,
            return_overflowing_tokens=chunk,
            stride=min(self.config.stride, max_length // 2) if chunk else 0,
        )
        mapping = enc.pop("overflow_to_sample_mapping", None) or list(range(len(texts)))
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        features = []
        schema = self.schema
        for j, example in enumerate(mapping):
            feat: Feature = {k: enc[k][j] for k in keys}
            feat["example_index"] = int(example)
            if with_labels:
                feat["labels"] = self._target(records[example]["label"], example, schema)
            features.append(feat)
        return features

    def _target(self, label: Any, index: int, schema: LabelSchema | None) -> Any:
        schema = schema or self.require_schema()
        where = f"in record {index}"
        if schema.kind == "multi_label":
            if not isinstance(label, list):
                raise DataError(
                    f"record {index} has label {label!r}; multi-label data needs a list of labels"
                )
            return schema.encode_multi(label, where=where)
        if schema.kind == "regression":
            if not isinstance(label, (int, float)):
                raise DataError(f"record {index} has label {label!r}; regression needs a number")
            lo, hi = schema.value_range or (0.0, 1.0)
            return (float(label) - lo) / ((hi - lo) or 1.0)
        return schema.id_of(label, where=where)

    # ---- model --------------------------------------------------------------------------
    def build_head(self, backbone: Any) -> Head:
        from .plugins import get_head

        schema = self.require_schema()
        head_cls = get_head(self.config.head, task=self)
        return head_cls(
            backbone.hidden_size,
            schema.num_labels,
            hidden=self.config.hidden,
            dropout=self.config.dropout,
            activation=self.config.activation,
            pooling=self.config.pooling,
        )

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = outputs["logits"].float()
        labels = batch["labels"]
        kind = self.require_schema().kind
        weights = torch.tensor(self.weights, device=logits.device) if self.weights else None
        if kind == "regression":
            return F.mse_loss(logits.squeeze(-1), labels.float())
        if kind == "multi_label":
            return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights)
        return F.cross_entropy(logits, labels.long(), weight=weights)

    def batch_outputs(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"logits": outputs["logits"].float()}

    def decode(self, outputs, features, records, **options: Any) -> list[Any]:
        schema = self.require_schema()
        grouped: dict[int, list[np.ndarray]] = defaultdict(list)
        for out, feat in zip(outputs, features):
            grouped[feat["example_index"]].append(out["logits"])
        if "threshold" in options and schema.kind != "multi_label":
            raise ConfigError(
                f"predict option threshold={options['threshold']!r} applies to multi-label "
                f"models; this model is {schema.kind.replace('_', '-')}, so every prediction is "
                f"the most probable label (see 'probabilities'). Drop threshold="
            )
        threshold = options.pop("threshold", self.config.threshold)
        if options:
            raise ConfigError(
                f"unknown classify predict option(s) {sorted(options)}; classify takes threshold= "
                "(multi-label)"
            )
        predictions: list[dict[str, Any]] = []
        for i in range(len(records)):
            logits = np.mean(grouped[i], axis=0)
            if schema.kind == "regression":
                lo, hi = schema.value_range or (0.0, 1.0)
                value = float(logits[0]) * ((hi - lo) or 1.0) + lo
                predictions.append({"label": value, "score": value})
            elif schema.kind == "multi_label":
                probs = 1 / (1 + np.exp(-logits))
                chosen = [j for j, p in enumerate(probs) if p >= threshold]
                predictions.append(
                    {
                        "label": [schema.labels[j] for j in chosen],
                        "score": [float(probs[j]) for j in chosen],
                        "probabilities": {schema.labels[j]: float(p) for j, p in enumerate(probs)},
                    }
                )
            else:
                probs = np.exp(logits - logits.max())
                probs /= probs.sum()
                best = int(probs.argmax())
                names = [int(x) for x in schema.labels] if self.int_labels else schema.labels
                predictions.append(
                    {
                        "label": names[best],
                        "score": float(probs[best]),
                        "probabilities": {names[j]: float(p) for j, p in enumerate(probs)},
                    }
                )
        return predictions

    def metrics(self, predictions: Sequence[Any], records: Sequence[Record]) -> dict[str, float]:
        schema = self.require_schema()
        if schema.kind == "regression":
            return regression_metrics(
                [r["label"] for r in records], [p["score"] for p in predictions]
            )
        if schema.kind == "multi_label":
            gold = np.array(
                [
                    schema.encode_multi(r["label"], where=f"in record {i}")
                    for i, r in enumerate(records)
                ]
            )
            pred = np.array([schema.encode_multi(p["label"]) for p in predictions])
            return multilabel_metrics(gold, pred)
        gold_ids = [schema.id_of(r["label"], where=f"in record {i}") for i, r in enumerate(records)]
        pred_ids = [schema.id_of(p["label"]) for p in predictions]
        return classification_metrics(gold_ids, pred_ids)

    # ---- export ---------------------------------------------------------------------------
    def export_hf(self, model: Any) -> Any:
        """``AutoModelForSequenceClassification`` (``text-classification`` pipeline); needs the
        head ``head="mlp", hidden=[hidden_size], activation="tanh", pooling="cls"``.

        Regression exports the score itself (the classifier is rescaled from the normalised
        target to the label range): call the pipeline with ``function_to_apply="none"``.
        Multi-label: ``top_k=None`` gives every label's sigmoid probability."""
        from .export import HFExport, sequence_classification, sequence_classification_check

        schema = self.require_schema()
        scale, shift, options, notes = 1.0, 0.0, {}, ""
        labels: tuple[str, ...] = schema.labels
        if schema.kind == "regression":
            lo, hi = schema.value_range or (0.0, 1.0)
            scale, shift, labels = (hi - lo) or 1.0, lo, ("score",)
            options = {"function_to_apply": "none"}
        elif schema.kind == "multi_label":
            options = {"top_k": None}
            notes = (
                "The pipeline returns every label's sigmoid probability; tunekit's prediction keeps those "
                f">= threshold ({self.config.threshold})."
            )
        if self.config.long_text == "chunk":
            notes += (
                " tunekit averages the logits of overlapping windows of long texts (long_text='chunk'); "
                "the pipeline truncates them."
            )
        hf = sequence_classification(
            model,
            labels=labels,
            problem_type=PROBLEM_TYPES[schema.kind],
            scale=scale,
            shift=shift,
            what=f"task {self.name!r}",
        )
        return HFExport(
            model=hf,
            pipeline="text-classification",
            pipeline_options=options,
            notes=notes.strip(),
            check=sequence_classification_check(model, hf, scale=scale, shift=shift),
        )

    def state(self) -> dict[str, Any]:
        return {**super().state(), "weights": self.weights, "int_labels": self.int_labels}

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self.weights = state.get("weights")
        self.int_labels = bool(state.get("int_labels", False))


def _maybe_int(label: str) -> Any:
    try:
        return int(label)
    except ValueError:
        return label


@hookimpl
def tunekit_register_tasks(register):
    register(ClassifyTask)
