"""Real data (slow): gensim's mini 20-Newsgroups sample, two groups (atheism, space)."""

from __future__ import annotations

import corpora
import pytest
from topic_corpus import purity

import tunekit


@pytest.mark.slow
def test_mini_newsgroup_topics(tmp_path):
    posts = corpora.mini_newsgroup()
    docs, gold = [p["text"] for p in posts], [p["label"] for p in posts]
    run = tunekit.finetune(
        task="topics", data=docs, model="minilm", reduction="pca", progress=False
    )
    assert run.metrics["n_topics"] >= 2
    assert purity(run.topics_, gold) > 0.9
    assert run.metrics["npmi"] > 0.1 and run.metrics["diversity"] > 0.8
    words = {w for t in (0, 1) for w, _ in run.get_topic(t)}
    assert {"space", "god"} & words
    kmeans = tunekit.finetune(
        task="topics", data=docs, model="minilm", n_topics=2, reduction="pca", progress=False
    )
    assert purity(kmeans.topics_, gold) > 0.9
    loaded = tunekit.load(run.save(tmp_path / "ng"), device="cpu")
    assert loaded.transform(docs[:20])[0] == run.transform(docs[:20])[0]
