"""The pair tasks: ``pair-sim`` (binary), ``pair-cls`` / ``nli`` (classes) and ``sts`` (a score).

Records are ``{"text_a": str, "text_b": str, "label": ...}`` (see :func:`read_pairs`).

Two architectures:

- ``cross-encoder`` (default): ``tokenizer(text_a, text_b)`` — one input with token type
  ids, both texts attend to each other — and a pooled classification / regression head.
- ``bi-encoder``: each text is encoded alone by the same (siamese) encoder and
  mean-pooled; the pair's score is the cosine similarity of the two embeddings, trained
  with a contrastive or a cosine (MSE) loss; ``pair-cls`` adds Sentence-BERT's softmax
  classifier on ``(u, v, |u-v|)``. The run also embeds texts: ``run.encode(texts)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from tunekit.plugin import (
    ConfigError,
    DataError,
    ExportError,
    Feature,
    Head,
    LabelSchema,
    Record,
    Task,
    classification_metrics,
    default_collate,
    get_head,
    one_of,
    regression_metrics,
)

from .data import PAIR_COLUMNS, read_pairs
from .heads import BiEncoderHead

ARCHITECTURES = ("cross-encoder", "bi-encoder")
#: labels taken as "same meaning" by pair-sim unless ``positive_label=`` says otherwise
POSITIVE_NAMES = (
    "1",
    "true",
    "yes",
    "y",
    "similar",
    "same",
    "paraphrase",
    "duplicate",
    "match",
    "positive",
    "entailment",
)
B_PREFIX = "b_"


def _tuple_of_ints(value: Any) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(int(v) for v in value)


def _optional_columns(value: Any) -> tuple[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str) or len(value) != 2:
        raise ConfigError(
            f"option text_columns={value!r} must name two columns, e.g. text_columns=('q', 'd')"
        )
    return (str(value[0]), str(value[1]))


def _optional_range(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    lo, hi = (float(v) for v in value)
    if not hi > lo:
        raise ConfigError(f"option score_range={value!r} must be (low, high) with high > low")
    return (lo, hi)


@attrs.frozen(kw_only=True)
class PairConfig:
    """Options shared by the pair tasks.

    - ``text_columns``: the two text columns, e.g. ``("q", "d")`` (auto-detected from
      ``text_a/text_b``, ``sentence1/sentence2``, ``query/title``, ``question1/question2``,
      ``premise/hypothesis``...); ``label_column``: the label / score column.
    - ``architecture``: ``cross-encoder`` (default) or ``bi-encoder``.
    - cross-encoder head: ``head`` (``linear`` | ``mlp`` | any registered head),
      ``hidden``, ``dropout``, ``activation``; ``pooling`` (``mean`` | ``cls`` | ``max``,
      also the bi-encoder's pooling).
    - bi-encoder: ``similarity_loss`` (``auto`` | ``contrastive`` | ``cosine``; ``auto`` is
      contrastive for pair-sim, cosine for sts), ``margin`` (of the contrastive loss, in
      cosine distance), ``projection`` (a dense layer of that width on the embeddings;
      needed with ``strategy="frozen"``).
    """

    text_columns: tuple[str, str] | None = attrs.field(default=None, converter=_optional_columns)
    label_column: str | None = None
    architecture: str = attrs.field(default="cross-encoder", validator=one_of(*ARCHITECTURES))
    head: str = "linear"
    hidden: tuple[int, ...] = attrs.field(default=(512,), converter=_tuple_of_ints)
    dropout: float = 0.1
    activation: str = "relu"
    pooling: str = attrs.field(default="mean", validator=one_of("mean", "cls", "max"))
    similarity_loss: str = attrs.field(
        default="auto", validator=one_of("auto", "contrastive", "cosine")
    )
    margin: float = 0.5
    projection: int | None = None


@attrs.frozen(kw_only=True)
class PairSimConfig(PairConfig):
    """Options of ``pair-sim``: :class:`PairConfig` plus

    - ``positive_label``: the label meaning "same meaning" (auto: ``1``, ``true``, ``yes``,
      ``similar``, ``paraphrase``, ``duplicate``..., else the second label in sorted order).
    - ``threshold``: decision threshold on the probability of the positive label
      (cross-encoder, default 0.5) or on the cosine similarity (bi-encoder, default
      ``1 - margin / 2`` for the contrastive loss, 0.5 for the cosine loss).
    """

    positive_label: str | None = None
    threshold: float | None = None


@attrs.frozen(kw_only=True)
class StsConfig(PairConfig):
    """Options of ``sts``: :class:`PairConfig` plus ``score_range``, the ``(low, high)`` of
    the scores (default: the training data's min and max). Scores are normalised to
    ``[0, 1]`` for training and predictions are mapped back (and clipped) to the range."""

    score_range: tuple[float, float] | None = attrs.field(default=None, converter=_optional_range)


class PairTask(Task):
    """Shared machinery of the pair tasks (reading, encoding, the two architectures).

    Subclasses set the label handling: :meth:`normalise_label`, :meth:`setup`,
    :meth:`target`, :meth:`loss`, :meth:`decode`, :meth:`metrics`.
    """

    Config: ClassVar[type] = PairConfig

    # ---- what the run and trainer need to know ------------------------------------------
    @property
    def run_class(self) -> type:
        from .run import PairRun

        return PairRun

    @property
    def bi_encoder(self) -> bool:
        return self.config.architecture == "bi-encoder"

    @property
    def cacheable_inputs(self) -> bool:  # type: ignore[override]
        # a bi-encoder batch holds 2 sequences per feature; the per-feature cache of a frozen
        # encoder holds one, so a frozen bi-encoder runs the encoder every epoch instead
        return not self.bi_encoder

    # ---- data ---------------------------------------------------------------------------
    def read(self, source: Any, *, name: str = "data") -> list[Record]:
        records = read_pairs(
            source,
            name=name,
            text_columns=self.config.text_columns,
            label_column=self.config.label_column,
        )
        for record in records:
            record["label"] = self.normalise_label(record["label"], record["where"])
        return records

    def normalise_label(self, label: Any, where: str) -> Any:
        """A class label as a string (``1``, ``1.0`` and ``True`` become ``"1"``)."""
        if isinstance(label, (bool, np.bool_)):
            return "1" if label else "0"
        if isinstance(label, (int, np.integer)):
            return str(int(label))
        if isinstance(label, (float, np.floating)):
            if float(label).is_integer():
                return str(int(label))
            raise DataError(
                f"{where} has label {label!r}, a score; task {self.name!r} needs class labels. "
                f"For similarity scores use task='sts'."
            )
        if isinstance(label, str):
            return (
                label[:-2] if label.endswith(".0") and label[:-2].lstrip("-").isdigit() else label
            )
        raise DataError(
            f"{where} has label {label!r} of type {type(label).__name__}; use a string or an integer"
        )

    def stratify_key(self, record: Record) -> Any:
        return record["label"] if isinstance(record["label"], str) else None

    def parse_inputs(self, inputs: Any) -> list[Record]:
        """Pairs to predict: ``(text_a, text_b)`` tuples/lists, dicts with two text keys
        (``text_a``/``text_b``, ``sentence1``/``sentence2``... or ``text_columns``), or
        ``"text_a\ttext_b"`` strings (lines of a TSV file)."""
        if isinstance(inputs, (str, Mapping)) or (
            isinstance(inputs, tuple) and all(isinstance(x, str) for x in inputs)
        ):
            inputs = [inputs]
        records = []
        for i, item in enumerate(inputs):
            where = f"predict input {i}"
            if isinstance(item, Mapping):
                a, b = self._dict_pair(item, where)
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                a, b = item
            elif (
                isinstance(item, str) and item.count("\t") == 1
            ):  # a TSV line (the CLI's --input file)
                a, b = item.split("\t")
            else:
                raise DataError(
                    f"{where} is {item!r:.80}; predict() takes pairs: (text_a, text_b) tuples, dicts "
                    f"such as {{'text_a': ..., 'text_b': ...}} or 'text_a<TAB>text_b' strings"
                )
            for side, text in (("first", a), ("second", b)):
                if not isinstance(text, str) or not text.strip():
                    raise DataError(f"{where} has an empty or non-text {side} text ({text!r})")
            records.append({"text_a": a, "text_b": b, "where": where})
        return records

    def _dict_pair(self, item: Mapping[str, Any], where: str) -> tuple[Any, Any]:
        candidates = [self.config.text_columns] if self.config.text_columns else list(PAIR_COLUMNS)
        for a, b in candidates:
            if a in item and b in item:
                return item[a], item[b]
        raise DataError(
            f"{where} has keys {sorted(item)}; a pair dict needs two text keys such as 'text_a' and 'text_b' "
            f"(or the text_columns the model was trained with)"
        )

    # ---- features -----------------------------------------------------------------------
    def encode(
        self, records: Sequence[Record], tokenizer: Any, *, max_length: int, with_labels: bool
    ) -> list[Feature]:
        texts_a = [r["text_a"] for r in records]
        texts_b = [r["text_b"] for r in records]
        if self.bi_encoder:
            enc_a = tokenizer(texts_a, truncation=True, max_length=max_length)
            enc_b = tokenizer(texts_b, truncation=True, max_length=max_length)
        else:
            enc_a = tokenizer(texts_a, texts_b, truncation=True, max_length=max_length)
            enc_b = None
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc_a]
        features = []
        for i, record in enumerate(records):
            feat: Feature = {k: enc_a[k][i] for k in keys}
            if enc_b is not None:
                feat.update({B_PREFIX + k: enc_b[k][i] for k in keys})
            feat["example_index"] = i
            if with_labels:
                feat["labels"] = self.target(record["label"], record.get("where", f"record {i}"))
            features.append(feat)
        return features

    def collate(self, features: Sequence[Feature], tokenizer: Any) -> dict[str, torch.Tensor]:
        if not self.bi_encoder:
            return default_collate(features, tokenizer)
        # both sides in one padded batch: rows 0..B-1 are the first texts, B..2B-1 the second
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in features[0]]
        sides = [{k: f[k] for k in keys} for f in features] + [
            {k: f[B_PREFIX + k] for k in keys} for f in features
        ]
        batch = dict(tokenizer.pad(sides, return_tensors="pt"))
        if "labels" in features[0]:
            batch["labels"] = torch.as_tensor(np.asarray([f["labels"] for f in features]))
        return batch

    # ---- model --------------------------------------------------------------------------
    def head_outputs(self) -> int:
        """Outputs of the cross-encoder head (classes, or 1 for a score)."""
        return self.require_schema().num_labels

    def build_head(self, backbone: Any) -> Head:
        cfg = self.config
        if self.bi_encoder:
            classes = self.require_schema().num_labels if self.bi_classes else 0
            return BiEncoderHead(
                backbone.hidden_size,
                num_classes=classes,
                pooling=cfg.pooling,
                projection=cfg.projection,
                dropout=cfg.dropout,
            )
        head_cls = get_head(cfg.head, task=self)
        return head_cls(
            backbone.hidden_size,
            self.head_outputs(),
            hidden=cfg.hidden,
            dropout=cfg.dropout,
            activation=cfg.activation,
            pooling=cfg.pooling,
        )

    #: whether the bi-encoder head needs a classifier on (u, v, |u-v|)
    bi_classes: ClassVar[bool] = False

    # ---- export -------------------------------------------------------------------------
    def export_hf(self, model: Any) -> Any:
        """Cross-encoder → ``AutoModelForSequenceClassification`` (``text-classification``
        pipeline with ``{"text": a, "text_pair": b}`` inputs); needs the head
        ``head="mlp", hidden=[hidden_size], activation="tanh", pooling="cls"``.
        Bi-encoder → ``AutoModel`` (``feature-extraction``): the caller pools the token
        embeddings of each text and takes the cosine similarity."""
        from tunekit.plugin import (
            HFExport,
            feature_extraction,
            sequence_classification,
            sequence_classification_check,
        )

        what = f"task {self.name!r}"
        if self.bi_encoder:
            if self.config.projection:
                raise ExportError(
                    f"{what}: the bi-encoder has a projection layer (projection={self.config.projection}), which "
                    f"transformers' AutoModel cannot hold; train without projection to export"
                )
            hf = feature_extraction(model)
            notes = (
                f"Bi-encoder: the model gives token embeddings. tunekit's embedding of a text is their "
                f"{self.config.pooling} pooling over the attention mask, and a pair's similarity the cosine of the "
                f"two embeddings; do the same with the feature-extraction pipeline's output."
            )
            if self.bi_classes:
                notes += " The softmax classifier on (u, v, |u-v|) has no transformers class and is not exported."

            def check(batch):
                inputs = model.encoder_inputs(batch)
                return model.hidden_states(batch), hf(**inputs).last_hidden_state

            return HFExport(model=hf, pipeline="feature-extraction", notes=notes, check=check)
        labels, problem, scale, shift, options, notes = self.export_labels()
        hf = sequence_classification(
            model,
            labels=labels,
            problem_type=problem,
            scale=scale,
            shift=shift,
            what=what,
        )
        return HFExport(
            model=hf,
            pipeline="text-classification",
            pipeline_options=options,
            notes=notes,
            check=sequence_classification_check(model, hf, scale=scale, shift=shift),
        )

    def export_labels(self) -> tuple[tuple[str, ...], str, float, float, dict[str, Any], str]:
        """(labels, problem_type, scale, shift, pipeline options, notes) of the exported
        cross-encoder classifier."""
        labels = self.require_schema().labels
        return labels, "single_label_classification", 1.0, 0.0, {}, ""

    def similarity_loss_name(self) -> str:
        return "cosine" if self.config.similarity_loss == "auto" else self.config.similarity_loss

    def batch_outputs(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {k: v.float() for k, v in outputs.items()}

    def target(self, label: Any, where: str) -> Any:
        raise NotImplementedError


def _softmax(logits: np.ndarray) -> np.ndarray:
    probs = np.exp(logits - logits.max())
    return probs / probs.sum()


class PairSimTask(PairTask):
    """Binary: are the two texts the same in meaning? (LCQMC, Quora Question Pairs, PAWS)

    Metrics: accuracy, F1 of the positive label, ROC-AUC.

    Example::

        run = tunekit.finetune(task="pair-sim", model="ernie-gram", data="lcqmc/train.tsv")
        run.predict([("今天天气怎么样", "今天天气如何")])
        # [{'label': '1', 'score': 0.93, 'probability': 0.93}]
    """

    name = "pair-sim"
    aliases = ("paraphrase", "text-similarity", "semantic-similarity")
    description = "sentence-pair similarity, binary (LCQMC, QQP, PAWS); cross- or bi-encoder"
    Config = PairSimConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.positive: str | None = None

    def setup(self, records: Sequence[Record]) -> None:
        self.schema = LabelSchema.from_values([r["label"] for r in records])
        labels = self.schema.labels
        if len(labels) != 2:
            detail = (
                f"only {labels[0]!r}"
                if len(labels) < 2
                else f"{len(labels)} labels: {', '.join(labels)}"
            )
            raise DataError(
                f"task 'pair-sim' is binary, but the training data has {detail}. "
                + (
                    "Add pairs of the other kind."
                    if len(labels) < 2
                    else "Use task='pair-cls' for several classes."
                )
            )
        self.positive = self._positive_label(labels)

    def _positive_label(self, labels: Sequence[str]) -> str:
        wanted = self.config.positive_label
        if wanted is not None:
            if str(wanted) not in labels:
                raise ConfigError(
                    f"positive_label={wanted!r} is not a label of the data; labels: {', '.join(labels)}"
                )
            return str(wanted)
        for name in POSITIVE_NAMES:
            for label in labels:
                if label.lower() == name:
                    return label
        return labels[1]

    def target(self, label: Any, where: str) -> Any:
        return self.require_schema().id_of(label, where=f"in {where}")

    @property
    def positive_id(self) -> int:
        return self.require_schema().id_of(self.positive)

    def similarity_loss_name(self) -> str:
        return (
            "contrastive" if self.config.similarity_loss == "auto" else self.config.similarity_loss
        )

    @property
    def threshold(self) -> float:
        if self.config.threshold is not None:
            return float(self.config.threshold)
        if self.bi_encoder and self.similarity_loss_name() == "contrastive":
            return 1.0 - self.config.margin / 2  # halfway between pulled-together and pushed-apart
        return 0.5

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        labels = batch["labels"].long()
        if not self.bi_encoder:
            return F.cross_entropy(outputs["logits"].float(), labels)
        same = (labels == self.positive_id).float()
        similarity = outputs["similarity"].float()
        if self.similarity_loss_name() == "cosine":
            return F.mse_loss(similarity, same)
        distance = 1.0 - similarity
        # Hadsell et al. 2006 on cosine distance (Sentence-BERT's ContrastiveLoss)
        return (
            0.5
            * (
                same * distance.pow(2) + (1 - same) * F.relu(self.config.margin - distance).pow(2)
            ).mean()
        )

    def decode(self, outputs, features, records, **options: Any) -> list[Any]:
        schema = self.require_schema()
        threshold = float(options.get("threshold", self.threshold))
        negative = next(label for label in schema.labels if label != self.positive)
        predictions = []
        for out in outputs:
            if self.bi_encoder:
                score = float(out["similarity"])
                label = self.positive if score >= threshold else negative
                predictions.append({"label": label, "score": score, "similarity": score})
            else:
                p = float(_softmax(out["logits"])[self.positive_id])
                label = self.positive if p >= threshold else negative
                predictions.append(
                    {
                        "label": label,
                        "score": p if label == self.positive else 1 - p,
                        "probability": p,
                    }
                )
        return predictions

    def metrics(self, predictions: Sequence[Any], records: Sequence[Record]) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

        schema = self.require_schema()
        gold = [
            int(schema.id_of(r["label"], where=f"in {r.get('where', i)}") == self.positive_id)
            for i, r in enumerate(records)
        ]
        pred = [int(p["label"] == self.positive) for p in predictions]
        ranking = [p.get("probability", p.get("similarity")) for p in predictions]
        result = {
            "accuracy": float(accuracy_score(gold, pred)),
            "f1": float(f1_score(gold, pred, zero_division=0)),
        }
        if len(set(gold)) == 2:  # ROC-AUC needs both kinds of pairs
            result["roc_auc"] = float(roc_auc_score(gold, ranking))
        return result

    def export_labels(self) -> tuple[tuple[str, ...], str, float, float, dict[str, Any], str]:
        labels, problem, scale, shift, options, _ = super().export_labels()
        notes = ""
        if abs(self.threshold - 0.5) > 1e-12 and not self.bi_encoder:
            notes = (
                f"tunekit predicts {self.positive!r} when its probability is >= threshold ({self.threshold}); the "
                f"pipeline's label is the most probable one (threshold 0.5)."
            )
        return labels, problem, scale, shift, options, notes

    def state(self) -> dict[str, Any]:
        return {**super().state(), "positive": self.positive}

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self.positive = state.get("positive")


class PairClassifyTask(PairTask):
    """Multi-class pair classification: NLI (entailment / neutral / contradiction), stance...

    Metrics: accuracy, macro-F1 (and MCC).

    Example::

        run = tunekit.finetune(task="nli", data="snli_train.jsonl")   # premise / hypothesis
        run.predict({"premise": "A man plays a guitar.", "hypothesis": "A man makes music."})
        # {'label': 'entailment', 'score': 0.91, 'probabilities': {...}}
    """

    name = "pair-cls"
    aliases = ("nli", "pair-classification", "text-pair-classification")
    description = (
        "sentence-pair classification, several classes (NLI, stance); cross- or bi-encoder"
    )
    bi_classes = True

    def setup(self, records: Sequence[Record]) -> None:
        self.schema = LabelSchema.from_values([r["label"] for r in records])
        if self.schema.num_labels < 2:
            raise DataError(
                f"the training data has only one label ({self.schema.labels[0]!r}); pair-cls needs at least two"
            )

    def target(self, label: Any, where: str) -> Any:
        return self.require_schema().id_of(label, where=f"in {where}")

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        return F.cross_entropy(outputs["logits"].float(), batch["labels"].long())

    def decode(self, outputs, features, records, **options: Any) -> list[Any]:
        labels = self.require_schema().labels
        predictions = []
        for out in outputs:
            probs = _softmax(out["logits"])
            best = int(probs.argmax())
            prediction = {
                "label": labels[best],
                "score": float(probs[best]),
                "probabilities": {label: float(p) for label, p in zip(labels, probs)},
            }
            if "similarity" in out:
                prediction["similarity"] = float(out["similarity"])
            predictions.append(prediction)
        return predictions

    def metrics(self, predictions: Sequence[Any], records: Sequence[Record]) -> dict[str, float]:
        schema = self.require_schema()
        gold = [
            schema.id_of(r["label"], where=f"in {r.get('where', i)}") for i, r in enumerate(records)
        ]
        pred = [schema.id_of(p["label"]) for p in predictions]
        return classification_metrics(gold, pred)


class StsTask(PairTask):
    """Semantic textual similarity: regression on a score (STS-B 0–5, or any range).

    Scores are normalised to ``[0, 1]`` with ``score_range`` (default: the training data's
    min and max) and predictions are mapped back. Metrics: Pearson, Spearman, MSE.

    Example::

        run = tunekit.finetune(task="sts", data="stsb_train.tsv")   # sentence1 / sentence2 / score
        run.predict(("A plane is taking off.", "An air plane is taking off."))
        # {'label': 4.6, 'score': 4.6}
    """

    name = "sts"
    aliases = ("semantic-textual-similarity", "pair-regression")
    description = (
        "semantic textual similarity: a score per pair (STS-B style); cross- or bi-encoder"
    )
    Config = StsConfig

    def normalise_label(self, label: Any, where: str) -> Any:
        if isinstance(label, (bool, np.bool_)):
            raise DataError(
                f"{where} has label {label!r}; sts needs a numeric score (for yes/no use task='pair-sim')"
            )
        try:
            value = float(label)
        except (TypeError, ValueError):
            raise DataError(
                f"{where} has score {label!r}, which is not a number; sts needs numeric scores "
                f"(e.g. 0-5). For class labels use task='pair-sim' or 'pair-cls'."
            ) from None
        if not np.isfinite(value):
            raise DataError(f"{where} has score {label!r}; scores must be finite numbers")
        return value

    def stratify_key(self, record: Record) -> Any:
        return None

    def setup(self, records: Sequence[Record]) -> None:
        if self.bi_encoder and self.config.similarity_loss == "contrastive":
            raise ConfigError(
                "similarity_loss='contrastive' needs same/different labels (task='pair-sim'); sts trains with "
                "similarity_loss='cosine' (MSE between the cosine similarity and the normalised score)"
            )
        values = [r["label"] for r in records]
        if self.config.score_range is not None:
            self.schema = LabelSchema(kind="regression", value_range=self.config.score_range)
        else:
            self.schema = LabelSchema.from_values(values, kind="regression")
        lo, hi = self.schema.value_range
        if not hi > lo:
            raise DataError(
                f"every training score is {lo}; sts needs scores that vary (or pass score_range=(low, high))"
            )

    def target(self, label: Any, where: str) -> Any:
        if not isinstance(label, (int, float)):
            raise DataError(f"{where} has score {label!r}; sts needs a number")
        lo, hi = self.require_schema().value_range
        return (float(label) - lo) / (hi - lo)

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        target = batch["labels"].float()
        if self.bi_encoder:
            return F.mse_loss(outputs["similarity"].float(), target)
        return F.mse_loss(outputs["logits"].float().squeeze(-1), target)

    def decode(self, outputs, features, records, **options: Any) -> list[Any]:
        lo, hi = self.require_schema().value_range
        predictions = []
        for out in outputs:
            unit = (
                float(out["similarity"]) if self.bi_encoder else float(np.ravel(out["logits"])[0])
            )
            value = lo + min(max(unit, 0.0), 1.0) * (hi - lo)
            prediction = {"label": value, "score": value}
            if self.bi_encoder:
                prediction["similarity"] = float(out["similarity"])
            predictions.append(prediction)
        return predictions

    def metrics(self, predictions: Sequence[Any], records: Sequence[Record]) -> dict[str, float]:
        return regression_metrics([r["label"] for r in records], [p["score"] for p in predictions])

    def export_labels(self) -> tuple[tuple[str, ...], str, float, float, dict[str, Any], str]:
        lo, hi = self.require_schema().value_range
        notes = (
            f"The score is the classifier's output itself (call the pipeline with function_to_apply='none'); "
            f"tunekit also clips it to score_range [{lo}, {hi}]."
        )
        return ("score",), "regression", hi - lo, lo, {"function_to_apply": "none"}, notes
