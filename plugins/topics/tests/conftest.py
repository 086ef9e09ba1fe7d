"""Fixtures of the topics tests: the generated corpus and one MiniLM topic model of it."""

from __future__ import annotations

import pytest
from topic_corpus import make_corpus


@pytest.fixture(scope="session")
def corpus():
    return make_corpus(per_theme=15, seed=0, noise=True)


@pytest.fixture(scope="session")
def minilm_run(corpus):
    """One MiniLM topic model of the generated corpus (PCA + HDBSCAN), shared by the tests."""
    import tunekit

    docs, _ = corpus
    return tunekit.finetune(
        task="topics", data=docs, model="minilm", min_topic_size=5, reduction="pca", max_length=32
    )
