"""The topic model proper, on numpy arrays: reduce → cluster → class-based TF-IDF.

Everything here is independent of torch and of the encoder: it takes document
embeddings and texts and returns a :class:`TopicModel`. The task (``task.py``) feeds it
and stores the result in a bundle.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
from scipy import sparse

from tunekit.plugin import ConfigError, DataError

logger = logging.getLogger("tunekit")

_CJK = re.compile(r"[\u3400-\u9fff]")


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def reduction_method(name: str) -> str:
    """``umap`` or ``pca`` for the ``reduction`` option (``auto``: UMAP when installed)."""
    if name == "auto":
        return "umap" if umap_available() else "pca"
    if name == "umap" and not umap_available():
        raise ConfigError(
            "reduction='umap' needs umap-learn, which is not installed: pip install 'tunekit-topics[umap]', "
            "or use reduction='pca'"
        )
    return name


@attrs.define
class Reduction:
    """Reduced vectors and, for PCA, the projection (``mean``, ``components``) that a bundle
    stores; UMAP's fitted graph is not stored (topics of new documents are assigned in the
    embedding space, which needs no reducer)."""

    vectors: np.ndarray
    method: str
    mean: np.ndarray | None = None
    components: np.ndarray | None = None


def reduce(
    embeddings: np.ndarray, *, method: str, n_components: int, n_neighbors: int, seed: int
) -> Reduction:
    """Reduce normalised *embeddings* to *n_components* dimensions with UMAP or PCA."""
    x = normalize(
        embeddings.astype(np.float32)
    )  # float32 as BERTopic passes it: UMAP's result depends on the dtype
    n_components = max(1, min(n_components, x.shape[0] - 1, x.shape[1]))
    if method == "none":
        return Reduction(vectors=x, method="none")
    if method == "umap":
        import umap

        reducer = umap.UMAP(
            n_neighbors=min(n_neighbors, x.shape[0] - 1),
            n_components=n_components,
            min_dist=0.0,
            metric="cosine",
            random_state=seed,
        )
        return Reduction(vectors=np.asarray(reducer.fit_transform(x)), method="umap")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, svd_solver="full", random_state=seed).fit(x)
    return Reduction(
        vectors=pca.transform(x), method="pca", mean=pca.mean_, components=pca.components_
    )


def cluster(
    vectors: np.ndarray,
    *,
    n_topics: int | None,
    min_topic_size: int,
    min_samples: int | None,
    seed: int,
) -> np.ndarray:
    """Cluster labels (``-1`` = outlier): KMeans with *n_topics*, else scikit-learn HDBSCAN."""
    if n_topics is not None:
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=n_topics, random_state=seed, n_init=10).fit_predict(vectors)
    from sklearn.cluster import HDBSCAN

    return HDBSCAN(
        min_cluster_size=min_topic_size,
        min_samples=min_samples,
        cluster_selection_method="eom",
        copy=True,
    ).fit_predict(vectors)


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Topics renumbered 0, 1, … from the largest down (ties: the earlier label first); -1 kept."""
    ids = [t for t in np.unique(labels) if t != -1]
    order = sorted(ids, key=lambda t: (-int((labels == t).sum()), int(t)))
    mapping = {old: new for new, old in enumerate(order)}
    mapping[-1] = -1
    return np.array([mapping[int(t)] for t in labels], dtype=np.int64)


def make_vectorizer(
    *,
    language: str,
    stop_words: Any,
    ngram_range: tuple[int, int],
    min_df: int | float,
    texts: Sequence[str],
):
    """The CountVectorizer of the topic vocabulary. Chinese text (``language='zh'``, or
    ``auto`` and CJK characters found) is segmented with jieba when installed, else into
    characters; English stop words are dropped with ``stop_words='english'``."""
    from sklearn.feature_extraction.text import CountVectorizer

    chinese = language == "zh" or (language == "auto" and any(_CJK.search(t) for t in texts[:200]))
    options: dict[str, Any] = {"ngram_range": tuple(ngram_range), "min_df": min_df}
    if chinese:
        options.update(tokenizer=chinese_tokenizer(), token_pattern=None, lowercase=False)
        options["stop_words"] = None if stop_words == "english" else stop_words
    else:
        options["stop_words"] = stop_words
    return CountVectorizer(**options)


def chinese_tokenizer():
    """jieba word segmentation (``tunekit-topics[zh]``), else single CJK characters."""
    keep = re.compile(r"[\w\u3400-\u9fff]")
    try:
        import jieba

        jieba.setLogLevel(logging.WARNING)

        def cut(text: str) -> list[str]:
            return [w for w in jieba.lcut(text) if w.strip() and keep.search(w) and not w.isdigit()]

    except ImportError:
        logger.warning(
            "jieba is not installed (pip install 'tunekit-topics[zh]'): Chinese topic words are single characters"
        )

        def cut(text: str) -> list[str]:
            return [c for c in text if _CJK.match(c)]

    return cut


def class_counts(
    doc_terms: sparse.csr_matrix, labels: np.ndarray, topic_ids: Sequence[int]
) -> sparse.csr_matrix:
    """Per-topic word counts ``[topics, vocabulary]``, rows in *topic_ids* order."""
    rows = {t: i for i, t in enumerate(topic_ids)}
    docs = [d for d, t in enumerate(labels) if int(t) in rows]  # documents of other topics left out
    onehot = sparse.csr_matrix(
        (np.ones(len(docs)), ([rows[int(labels[d])] for d in docs], docs)),
        shape=(len(topic_ids), len(labels)),
    )
    return (onehot @ doc_terms).tocsr()


def class_tfidf(counts: sparse.csr_matrix, *, reduce_frequent_words: bool = False) -> np.ndarray:
    """BERTopic's c-TF-IDF: ``tf(t, c) · log(1 + A / f(t))`` with tf L1-normalised per topic,
    *A* the average number of words per topic and *f(t)* the word's count over all topics.
    *reduce_frequent_words* takes the square root of tf (BERTopic's option of that name),
    so words frequent everywhere ("said") weigh less against distinctive ones."""
    dense = np.asarray(counts.todense(), dtype=np.float64)
    totals = dense.sum(1, keepdims=True)
    tf = dense / np.maximum(totals, 1e-12)
    if reduce_frequent_words:
        tf = np.sqrt(tf)
    average = dense.sum() / max(dense.shape[0], 1)
    freq = dense.sum(0)
    idf = np.where(freq > 0, np.log(1.0 + average / np.maximum(freq, 1e-12)), 0.0)
    return (tf * idf).astype(np.float32)


def top_indices(ctfidf_row: np.ndarray, n: int) -> list[int]:
    """Vocabulary indices of the *n* highest-scoring words of one c-TF-IDF row (zero
    scores left out)."""
    order = np.argsort(-ctfidf_row, kind="stable")[:n]
    return [int(i) for i in order if ctfidf_row[i] > 0]


def top_words(ctfidf_row: np.ndarray, vocabulary: Sequence[str], n: int) -> list[tuple[str, float]]:
    """The *n* highest-scoring words of one c-TF-IDF row with their scores."""
    return [(vocabulary[i], float(ctfidf_row[i])) for i in top_indices(ctfidf_row, n)]


def topic_embeddings(embeddings: np.ndarray, labels: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """Unit-length mean of the normalised embeddings of each topic's documents."""
    x = normalize(embeddings)
    return normalize(np.stack([x[labels == t].mean(0) for t in ids]))


def merge_topics(labels: np.ndarray, doc_terms: sparse.csr_matrix, nr_topics: int) -> np.ndarray:
    """Merge topics until *nr_topics* remain (outliers aside): each step folds the smallest
    topic into the topic whose c-TF-IDF is most similar (cosine)."""
    labels = labels.copy()
    while True:
        ids = [int(t) for t in np.unique(labels) if t != -1]
        if len(ids) <= nr_topics:
            return relabel_by_size(labels)
        scores = normalize(class_tfidf(class_counts(doc_terms, labels, ids)).astype(np.float64))
        sizes = [int((labels == t).sum()) for t in ids]
        small = int(np.argmin(sizes))
        sims = scores @ scores[small]
        sims[small] = -np.inf
        target = int(np.argmax(sims))
        logger.info(
            "merging topic %d (%d documents) into topic %d", ids[small], sizes[small], ids[target]
        )
        labels[labels == ids[small]] = ids[target]


def assign_outliers(labels: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Outliers (-1) reassigned to the topic whose embedding is most similar to theirs."""
    ids = [int(t) for t in np.unique(labels) if t != -1]
    outliers = labels == -1
    if not outliers.any() or not ids:
        return labels
    centers = topic_embeddings(embeddings, labels, ids)
    sims = normalize(embeddings[outliers]) @ centers.T
    labels = labels.copy()
    labels[outliers] = np.asarray(ids)[sims.argmax(1)]
    return labels


def check_documents(texts: Sequence[str], *, min_topic_size: int, n_topics: int | None) -> None:
    """Refuse corpora a topic model cannot be fitted on, with the fix in the message."""
    n = len(texts)
    if n_topics is not None and n < n_topics:
        raise DataError(
            f"data has {n} documents, fewer than n_topics={n_topics}; pass more documents or a smaller n_topics"
        )
    if n_topics is None and n < max(min_topic_size, 2):
        raise DataError(
            f"data has {n} documents, fewer than min_topic_size={min_topic_size}: no topic can be found. "
            f"Pass more documents, a smaller min_topic_size, or n_topics= for KMeans"
        )
    if len(set(texts)) == 1:
        raise DataError(
            f"all {n} documents are identical ({texts[0][:60]!r}): there are no topics to find"
        )
