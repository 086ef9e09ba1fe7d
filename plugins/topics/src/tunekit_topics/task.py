"""``topics`` (alias ``topic-model``): BERTopic-style topic modeling as a tunekit task.

``finetune(task="topics", data=docs, model=...)`` runs, in order:

1. optional encoder adaptation on the documents through the shared Trainer
   (``adapt="simcse"`` or ``adapt="mlm"``, see :mod:`tunekit_topics.adapt`);
2. document embeddings: the encoder's last layer, mean-pooled, in batches;
3. dimensionality reduction (``reduction="auto"``: UMAP when ``umap-learn`` is installed,
   else PCA);
4. clustering: scikit-learn HDBSCAN (``min_topic_size``; topic -1 = outliers) or KMeans
   when ``n_topics`` is given; topics are numbered from the largest down;
5. optional merging down to ``nr_topics`` and outlier reassignment (``reduce_outliers``);
6. class-based TF-IDF over a CountVectorizer → the top words of each topic;
7. NPMI coherence and topic diversity, stored in the run's metrics and history.

The task is unsupervised (``supervised = False``): ``finetune`` calls :meth:`TopicsTask.fit`,
which returns a :class:`~tunekit_topics.run.TopicRun`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from tunekit.plugin import (
    ConfigError,
    DataError,
    Feature,
    Head,
    History,
    Record,
    Task,
    TrainingConfig,
    find_column,
    is_missing,
    one_of,
    read_table,
    text_inputs,
)

from . import pipeline
from .adapt import ADAPT_METHODS, adapt_encoder
from .coherence import npmi_from_matrix
from .head import TopicHead

logger = logging.getLogger("tunekit")

TEXT_COLUMNS = (
    "text",
    "document",
    "doc",
    "content",
    "body",
    "sentence",
    "review",
    "abstract",
    "title",
)
#: temperature turning cosine similarities to topic embeddings into topic probabilities
PROBABILITY_TEMPERATURE = 0.05
REPRESENTATIVE_CHARS = 300


def _optional_positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ConfigError(f"option {attribute.name}={value!r} must be a positive integer or None")


def _min_topic_size(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, int) or value < 2:
        raise ConfigError(
            f"option min_topic_size={value!r} must be an integer >= 2 (HDBSCAN's smallest cluster)"
        )


def _adapt(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value not in ADAPT_METHODS:
        raise ConfigError(f"option adapt={value!r} must be None, 'simcse' or 'mlm'")


def _ngrams(value: Any) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"option ngram_range={value!r} must be two integers, e.g. (1, 2)"
        ) from exc
    if not 1 <= low <= high:
        raise ConfigError(f"option ngram_range={value!r} must satisfy 1 <= min <= max")
    return (low, high)


def _stop_words(value: Any) -> Any:
    if value is None or value == "english":
        return value
    if isinstance(value, str):
        raise ConfigError(f"option stop_words={value!r}: use 'english', None or a list of words")
    return tuple(value)


@attrs.frozen(kw_only=True)
class TopicsConfig:
    """Options of the ``topics`` task (keyword arguments of ``finetune``).

    - ``text_column``: the documents' column (default: first of text/document/content/…).
    - ``min_topic_size`` (10): HDBSCAN's ``min_cluster_size``; ``min_samples`` (None: the same,
      and ``min_topic_size // 2`` when that finds fewer than two topics).
    - ``n_topics``: cluster with KMeans into this many topics instead (no outliers).
    - ``nr_topics``: merge the most similar topics until this many remain.
    - ``reduce_outliers`` (False): reassign topic -1 documents to their most similar topic.
    - ``reduction``: ``auto`` (UMAP if installed, else PCA), ``umap``, ``pca`` or ``none``;
      ``n_components`` (5), ``n_neighbors`` (15, UMAP only).
    - ``stop_words`` (``"english"``), ``ngram_range`` ((1, 1)), ``min_df`` (1),
      ``language`` (``auto``: jieba segmentation when the documents are Chinese),
      ``top_n_words`` (10), ``reduce_frequent_words`` (False: √tf, BERTopic's option): the
      topic vocabulary and representation.
    - ``adapt``: ``None``, ``"simcse"`` or ``"mlm"`` — fine-tune the encoder on the documents
      first (``epochs``, ``learning_rate``, ``strategy`` apply); ``simcse_temperature`` (0.05).
    - ``representative_docs`` (3): documents kept per topic for ``topic_info()``.

    Example::

        tunekit.finetune(task="topics", data=docs, min_topic_size=15, nr_topics=20, adapt="simcse")
    """

    text_column: str | None = None
    min_topic_size: int = attrs.field(default=10, validator=_min_topic_size)
    min_samples: int | None = attrs.field(default=None, validator=_optional_positive)
    n_topics: int | None = attrs.field(default=None, validator=_optional_positive)
    nr_topics: int | None = attrs.field(default=None, validator=_optional_positive)
    reduce_outliers: bool = False
    reduction: str = attrs.field(default="auto", validator=one_of("auto", "umap", "pca", "none"))
    n_components: int = attrs.field(default=5, validator=_optional_positive)
    n_neighbors: int = attrs.field(default=15, validator=_optional_positive)
    stop_words: Any = attrs.field(default="english", converter=_stop_words)
    ngram_range: tuple[int, int] = attrs.field(default=(1, 1), converter=_ngrams)
    min_df: int = attrs.field(default=1, validator=_optional_positive)
    language: str = attrs.field(default="auto", validator=one_of("auto", "en", "zh"))
    top_n_words: int = attrs.field(default=10, validator=_optional_positive)
    reduce_frequent_words: bool = False
    adapt: str | None = attrs.field(default=None, validator=_adapt)
    simcse_temperature: float = 0.05
    representative_docs: int = attrs.field(default=3, validator=_optional_positive)


class TopicsTask(Task):
    """Topic modeling: documents → topics with top words (BERTopic's pipeline).

    =============  ==============================================================
    data           documents: a list of strings, a text column of any table
    fit            embed → reduce → cluster → c-TF-IDF (:meth:`fit`)
    predict        ``{"topic", "probability", "name"}`` per document
    metrics        ``npmi`` (coherence), ``diversity``, ``n_topics``, ``outlier_share``
    =============  ==============================================================

    Example::

        run = tunekit.finetune(task="topics", data=docs, model="minilm", min_topic_size=10)
        run.topic_info()
        run.transform(["a new document"])
    """

    name = "topics"
    aliases = ("topic-model", "bertopic")
    description = "topic modeling: embeddings → UMAP/PCA → HDBSCAN/KMeans → c-TF-IDF top words"
    Config = TopicsConfig
    supervised = False
    default_metric = "npmi"
    greater_is_better = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.topics: dict[str, Any] = {}

    @property
    def run_class(self) -> type:
        from .run import TopicRun

        return TopicRun

    # ---- data ---------------------------------------------------------------------------
    def read(self, source: Any, *, name: str = "data") -> list[Record]:
        """Documents as ``{"text": ...}``; empty ones are dropped (and counted in the log)."""
        rows = read_table(source, name=name, tuple_columns=("text",))
        column = find_column(
            list(rows[0].keys()),
            self.config.text_column,
            TEXT_COLUMNS,
            role="text",
            name=name,
            option="text_column",
        )
        records, empty = [], 0
        for i, row in enumerate(rows):
            text = row.get(column)
            if is_missing(text) or (isinstance(text, str) and not text.strip()):
                empty += 1
                continue
            if not isinstance(text, str):
                raise DataError(
                    f"{name} record {i} has a {type(text).__name__} in column {column!r}, not text: {text!r}"
                )
            records.append({"text": text})
        if empty:
            logger.warning("%s: dropped %d empty document(s) of %d", name, empty, len(rows))
        if not records:
            raise DataError(
                f"{name} has no text: all {len(rows)} documents in column {column!r} are empty"
            )
        return records

    def parse_inputs(self, inputs: Any) -> list[Record]:
        return text_inputs(inputs, what="document")

    def encode(
        self, records: Sequence[Record], tokenizer: Any, *, max_length: int, with_labels: bool
    ) -> list[Feature]:
        enc = tokenizer([r["text"] for r in records], truncation=True, max_length=max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        return [{**{k: enc[k][i] for k in keys}, "example_index": i} for i in range(len(records))]

    # ---- model --------------------------------------------------------------------------
    def build_head(self, backbone: Any) -> Head:
        t = self.topics
        return TopicHead(
            backbone.hidden_size,
            n_topics=len([x for x in t.get("ids", []) if x != -1]),
            n_rows=len(t.get("ids", [])),
            vocab_size=len(t.get("vocabulary", [])),
            n_docs=int(t.get("n_docs", 0)),
            reducer_dims=int(t.get("reducer_dims", 0)),
            map_dims=int(t.get("map_dims", 0)),
        )

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        raise ConfigError(
            "the topics task has no training loss: it is fitted by finetune(task='topics', ...)"
        )

    def decode(self, outputs, features, records, **options: Any) -> list[dict[str, Any]]:
        """``{"topic", "probability", "name"}`` per document: the topic whose embedding is
        most similar, or -1 when the similarity is below every fitted member's (HDBSCAN
        without ``reduce_outliers``)."""
        if options:
            raise ConfigError(
                f"unknown topics predict option(s) {sorted(options)}; topics predict takes none"
            )
        if not self.topics:
            raise ConfigError(
                "the topic model is not fitted yet: run finetune(task='topics', data=...) first"
            )
        ids = [x for x in self.topics["ids"] if x != -1]
        thresholds = [(-np.inf if v is None else v) for v in self.topics["thresholds"]]
        names = dict(zip(self.topics["ids"], self.topics["names"]))
        out = [None] * len(records)
        for o, f in zip(outputs, features):
            sims = np.asarray(o["similarity"], dtype=np.float64)
            z = sims / PROBABILITY_TEMPERATURE
            probs = np.exp(z - z.max())
            probs /= probs.sum()
            best = int(np.argmax(sims))
            topic = ids[best] if sims[best] >= thresholds[best] else -1
            out[f["example_index"]] = {
                "topic": topic,
                "probability": float(probs[best]),
                "name": names.get(topic, ""),
            }
        return out

    # ---- fitting --------------------------------------------------------------------------
    def fit(
        self,
        *,
        model: Any = None,
        data: Any = None,
        eval_data: Any = None,
        strategy: Any = None,
        training: TrainingConfig | None = None,
        **_: Any,
    ):
        """Fit the topic model on *data* and return a :class:`~tunekit_topics.run.TopicRun`.

        With ``model=None`` the encoder is chosen from the documents as for the supervised
        tasks (:func:`tunekit.plugin.default_model_for`): ``multilingual-e5-small`` for
        text the embedded MiniLM cannot read, or an error naming its install command."""
        from tunekit.plugin import (
            TaskModel,
            backbone_identity,
            check_max_length,
            default_model_for,
            load_backbone,
            new_strategy,
            resolve_precision,
        )

        training = training or TrainingConfig()
        cfg = self.config
        start = time.perf_counter()
        if eval_data is not None:
            logger.warning(
                "topics: eval_data is not used to fit topics; use run.evaluate(docs) for coherence on other documents"
            )
        records = self.read(data, name="data")
        texts = [r["text"] for r in records]
        pipeline.check_documents(texts, min_topic_size=cfg.min_topic_size, n_topics=cfg.n_topics)
        method = pipeline.reduction_method(cfg.reduction)
        if model is None:  # the embedded default, or the multilingual one for text it cannot read
            model = default_model_for(records)
        backbone = load_backbone(model)
        check_max_length(training, backbone)
        history = History()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        precision = resolve_precision(training.precision, device)
        if cfg.adapt:
            strategy = strategy or new_strategy("full")
            # before adapters are attached to it
            identity = backbone_identity(backbone, strategy, adapted=cfg.adapt)
            trained, history = adapt_encoder(
                cfg.adapt,
                backbone,
                texts,
                strategy=strategy,
                training=training,
                temperature=cfg.simcse_temperature,
            )
            # the topic run keeps the adaptation's strategy: its bundle stores what it trained
            taskmodel = TaskModel(
                trained.encoder, TopicHead(backbone.hidden_size), trained.representation
            )
            final_strategy = strategy
        else:
            if strategy is not None and strategy.name != "full":
                logger.warning(
                    "topics: strategy=%r only applies with adapt=...; the encoder is used as is",
                    strategy.name,
                )
            final_strategy = new_strategy("frozen", cache_features=False)
            identity = backbone.identity()
            taskmodel = TaskModel(backbone.model, TopicHead(backbone.hidden_size))
            final_strategy.apply(taskmodel)
        taskmodel.to(device).eval()
        embed_start = time.perf_counter()
        embeddings = embed(
            taskmodel, self, backbone.tokenizer, records, training=training, precision=precision
        )
        embed_seconds = time.perf_counter() - embed_start

        fitted = fit_topic_model(embeddings, texts, cfg, method=method, seed=training.seed)
        self.topics = fitted["state"]
        head = self.build_head(backbone)
        for key, value in fitted["buffers"].items():
            getattr(head, key).copy_(torch.as_tensor(value))
        taskmodel.head = head.to(device)
        metrics = fitted["metrics"]
        metrics["seconds"] = round(time.perf_counter() - start, 3)
        metrics["embed_seconds"] = round(embed_seconds, 3)
        history.append({"stage": "topics", **metrics})
        history.info.update(
            documents=len(texts),
            reduction=method,
            clustering="kmeans" if cfg.n_topics else "hdbscan",
            adapt=cfg.adapt,
        )

        from .run import TopicRun

        run = TopicRun(
            task=self,
            strategy=final_strategy,
            model=taskmodel,
            tokenizer=backbone.tokenizer,
            training=training,
            backbone=identity,
            history=history,
            metrics=metrics,
            precision=precision,
        )
        run.documents = texts
        run.embeddings = embeddings
        if training.output_dir:
            run.save(Path(training.output_dir) / "bundle")
        return run

    # ---- persistence ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {**super().state(), "topics": self.topics}

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self.topics = dict(state.get("topics") or {})


def embed(
    model,
    task: Task,
    tokenizer: Any,
    records: Sequence[Record],
    *,
    training: TrainingConfig,
    precision: str,
) -> np.ndarray:
    """Mean-pooled embeddings ``[documents, hidden]`` in batches (length-sorted), with a
    progress bar when ``progress`` is on (default: when stderr is a terminal)."""
    from tqdm.auto import tqdm

    from tunekit.plugin import compute_outputs

    features = task.encode(records, tokenizer, max_length=training.max_length, with_labels=False)
    batch_size = training.eval_batch_size or 2 * training.batch_size
    chunk = batch_size * 8
    progress = training.progress if training.progress is not None else sys.stderr.isatty()
    rows: list[np.ndarray] = []
    with tqdm(total=len(features), disable=not progress, desc="embedding", unit="doc") as bar:
        for start in range(0, len(features), chunk):
            outputs, _ = compute_outputs(
                model,
                task,
                tokenizer,
                features[start : start + chunk],
                batch_size=batch_size,
                precision=precision,
            )
            rows += [o["embedding"] for o in outputs]
            bar.update(len(outputs))
    return np.stack(rows).astype(np.float32)


def outlier_threshold(similarities: np.ndarray, members: np.ndarray) -> float:
    """The similarity below which a new document is no member of a topic: the 95th
    percentile of the fitted non-members' similarity to it (documents of other topics and
    outliers), or the least similar member when that is lower. New documents written
    differently from the corpus still reach their topic; ones unlike every topic get -1."""
    inside = similarities[members]
    outside = similarities[~members]
    if not len(outside):
        return float(inside.min()) - 1e-6
    return float(min(np.quantile(outside, 0.95), inside.min() - 1e-6))


def fit_topic_model(
    embeddings: np.ndarray, texts: Sequence[str], cfg: TopicsConfig, *, method: str, seed: int
) -> dict[str, Any]:
    """The topic model of *embeddings* / *texts*: JSON state, head buffers and metrics."""
    reduced = pipeline.reduce(
        embeddings,
        method=method,
        n_components=cfg.n_components,
        n_neighbors=cfg.n_neighbors,
        seed=seed,
    )
    labels = pipeline.cluster(
        reduced.vectors,
        n_topics=cfg.n_topics,
        min_topic_size=cfg.min_topic_size,
        min_samples=cfg.min_samples,
        seed=seed,
    )
    if (
        cfg.n_topics is None
        and cfg.min_samples is None
        and labels.max() < 1
        and cfg.min_topic_size >= 4
    ):
        # PCA keeps far less local density contrast than UMAP: with HDBSCAN's default
        # (min_samples = min_topic_size) a real corpus can come out as one blob or all
        # outliers; core distances over a smaller neighbourhood separate it again.
        retry = max(2, cfg.min_topic_size // 2)
        logger.info(
            "topics: HDBSCAN found %d topic(s); retrying with min_samples=%d",
            labels.max() + 1,
            retry,
        )
        labels = pipeline.cluster(
            reduced.vectors,
            n_topics=None,
            min_topic_size=cfg.min_topic_size,
            min_samples=retry,
            seed=seed,
        )
    labels = pipeline.relabel_by_size(labels)
    if (labels == -1).all():
        raise DataError(
            f"HDBSCAN found no topic in {len(texts)} documents with min_topic_size={cfg.min_topic_size} (every document "
            f"is an outlier); pass a smaller min_topic_size, more documents, or n_topics= for KMeans"
        )
    vectorizer = pipeline.make_vectorizer(
        language=cfg.language,
        stop_words=cfg.stop_words,
        ngram_range=cfg.ngram_range,
        min_df=cfg.min_df,
        texts=texts,
    )
    try:
        doc_terms = vectorizer.fit_transform(texts).tocsr()
    except ValueError as exc:
        raise DataError(
            f"the documents leave no topic vocabulary ({exc}); lower min_df, or pass stop_words=None"
        ) from exc
    vocabulary = [str(w) for w in vectorizer.get_feature_names_out()]
    if cfg.nr_topics is not None:
        labels = pipeline.merge_topics(labels, doc_terms, cfg.nr_topics)
    n_clustered = int((labels != -1).sum())
    outlier_share = 1.0 - n_clustered / len(labels)
    if cfg.reduce_outliers:
        labels = pipeline.assign_outliers(labels, embeddings)
    ids = sorted(int(t) for t in np.unique(labels))
    topic_ids = [t for t in ids if t != -1]
    if len(topic_ids) == 1:
        logger.warning(
            "topics: only one topic was found in %d documents; try a smaller min_topic_size or n_topics=",
            len(texts),
        )
    counts = pipeline.class_counts(doc_terms, labels, ids)
    ctfidf = pipeline.class_tfidf(counts, reduce_frequent_words=cfg.reduce_frequent_words)
    centers = pipeline.topic_embeddings(embeddings, labels, topic_ids)
    unit = pipeline.normalize(embeddings)
    sims = unit @ centers.T
    hdbscan_outliers = cfg.n_topics is None and not cfg.reduce_outliers
    thresholds, representative, sizes, representation, names = [], {}, [], [], []
    for row, t in enumerate(ids):
        words = pipeline.top_words(ctfidf[row], vocabulary, cfg.top_n_words)
        members = np.flatnonzero(labels == t)
        sizes.append(len(members))
        representation.append([[w, round(s, 6)] for w, s in words])
        names.append("_".join([str(t), *[w for w, _ in words[:4]]]))
        if t == -1:
            continue
        k = topic_ids.index(t)
        member_sims = sims[members, k]
        thresholds.append(outlier_threshold(sims[:, k], labels == t) if hdbscan_outliers else None)
        best = members[np.argsort(-member_sims, kind="stable")[: cfg.representative_docs]]
        representative[str(t)] = [texts[i][:REPRESENTATIVE_CHARS] for i in best]
    z = sims / PROBABILITY_TEMPERATURE
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    doc_probs = np.array(
        [probs[i, topic_ids.index(t)] if t != -1 else 0.0 for i, t in enumerate(labels)],
        dtype=np.float32,
    )
    map2d = pipeline.reduce(
        embeddings, method=method, n_components=2, n_neighbors=cfg.n_neighbors, seed=seed
    )
    coords = map2d.vectors
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    tops = [pipeline.top_indices(ctfidf[ids.index(t)], cfg.top_n_words) for t in topic_ids]
    top_strings = [[vocabulary[i] for i in words] for words in tops]
    from .coherence import topic_diversity

    metrics = {
        "n_topics": len(topic_ids),
        "outlier_share": round(outlier_share, 6),
        "npmi": npmi_from_matrix(tops, doc_terms),
        "diversity": topic_diversity(top_strings),
    }
    state = {
        "ids": ids,
        "names": names,
        "counts": sizes,
        "representation": representation,
        "representative_docs": representative,
        "thresholds": thresholds,
        "vocabulary": vocabulary,
        "n_docs": len(texts),
        "reduction": reduced.method,
        "map_reduction": map2d.method,
        "reducer_dims": 0 if reduced.components is None else int(reduced.components.shape[0]),
        "map_dims": 0 if map2d.components is None else int(map2d.components.shape[0]),
        "outlier_share": metrics["outlier_share"],
    }
    buffers = {
        "topic_embeddings": centers.astype(np.float32),
        "ctfidf": ctfidf,
        "doc_topics": labels.astype(np.int64),
        "doc_probabilities": doc_probs,
        "doc_coords": coords[:, :2].astype(np.float32),
    }
    if reduced.components is not None:
        buffers.update(
            reducer_mean=reduced.mean.astype(np.float32),
            reducer_components=reduced.components.astype(np.float32),
        )
    if map2d.components is not None:
        buffers.update(
            map_mean=map2d.mean.astype(np.float32),
            map_components=map2d.components.astype(np.float32),
        )
    return {"state": state, "buffers": buffers, "metrics": metrics}
