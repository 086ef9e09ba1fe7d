"""Topic quality: NPMI coherence over a reference corpus and topic diversity."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def topic_npmi(
    topics: Sequence[Sequence[str]], documents: Sequence[Sequence[str]] | object
) -> float:
    """Mean normalised PMI of every pair of top words per topic, averaged over topics.

    Co-occurrence is counted per document (boolean document frequency, the ``u_mass`` /
    ``c_npmi`` style with whole documents as windows). A pair that never co-occurs scores
    -1; a word missing from the corpus makes its pairs -1. *documents* is a list of token
    lists, or a scipy sparse / numpy document-term matrix together with ``vocabulary``
    handled by :func:`npmi_from_matrix`.

    Example::

        topic_npmi([["cat", "dog"]], [["cat", "dog"], ["cat"], ["fish"]])  # ≈ 0.42
    """
    vocab = sorted({w for topic in topics for w in topic})
    index = {w: i for i, w in enumerate(vocab)}
    rows = np.zeros((len(documents), len(vocab)), dtype=bool)  # type: ignore[arg-type]
    for d, doc in enumerate(documents):  # type: ignore[arg-type]
        for w in set(doc) & index.keys():
            rows[d, index[w]] = True
    return npmi_from_matrix([[index[w] for w in t] for t in topics], rows)


def npmi_from_matrix(topics: Sequence[Sequence[int]], matrix) -> float:
    """:func:`topic_npmi` over a ``[documents, vocabulary]`` (sparse or dense) matrix,
    with topics given as column indices."""
    n_docs = matrix.shape[0]
    if n_docs == 0 or not topics:
        return float("nan")
    scores = []
    for words in topics:
        words = list(dict.fromkeys(words))
        if len(words) < 2:
            continue
        cols = matrix[:, words]
        cols = cols.toarray() if hasattr(cols, "toarray") else np.asarray(cols)
        present = (cols > 0).astype(np.float64)
        single = present.sum(0) / n_docs
        joint = (present.T @ present) / n_docs
        pair_scores = []
        for i in range(len(words)):
            for j in range(i + 1, len(words)):
                pij = joint[i, j]
                if pij <= 0 or single[i] <= 0 or single[j] <= 0:
                    pair_scores.append(-1.0)
                elif pij >= 1.0:
                    pair_scores.append(1.0)
                else:
                    pmi = math.log(pij / (single[i] * single[j]))
                    pair_scores.append(pmi / -math.log(pij))
        scores.append(float(np.mean(pair_scores)))
    return float(np.mean(scores)) if scores else float("nan")


def topic_diversity(topics: Sequence[Sequence[str]]) -> float:
    """Share of unique words among all topics' top words (1.0: no word shared).

    Example::

        topic_diversity([["a", "b"], ["b", "c"]])  # 0.75
    """
    words = [w for topic in topics for w in topic]
    return len(set(words)) / len(words) if words else float("nan")
