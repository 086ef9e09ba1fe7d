"""Unit tests of the topic pipeline pieces, the metrics and bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import sparse
from topic_corpus import make_corpus
from tunekit_topics import pipeline, topic_diversity, topic_npmi

import tunekit
from tunekit.errors import ConfigError, DataError


def test_npmi_and_diversity_by_hand():
    docs = [["cat", "dog"], ["cat", "dog"], ["fish"], ["bird"]]
    # p(cat)=p(dog)=p(cat,dog)=0.5: npmi = log(0.5/0.25) / -log(0.5) = 1
    assert topic_npmi([["cat", "dog"]], docs) == pytest.approx(1.0)
    assert topic_npmi([["cat", "fish"]], docs) == pytest.approx(-1.0)  # never together
    assert topic_diversity([["a", "b"], ["b", "c"]]) == pytest.approx(0.75)


def test_class_tfidf_prefers_distinctive_words():
    counts = sparse.csr_matrix(np.array([[5, 5, 0], [0, 5, 5]], dtype=float))  # word 1 is shared
    scores = pipeline.class_tfidf(counts)
    assert scores[0, 0] > scores[0, 1] and scores[1, 2] > scores[1, 1]
    assert scores[0, 2] == 0
    assert [w for w, _ in pipeline.top_words(scores[0], ["a", "b", "c"], 5)] == ["a", "b"]
    # a word frequent in both topics: √tf narrows its lead over a rarer distinctive word
    counts = sparse.csr_matrix(np.array([[9, 1, 0], [9, 0, 1]], dtype=float))
    plain = pipeline.class_tfidf(counts)
    reduced = pipeline.class_tfidf(counts, reduce_frequent_words=True)
    assert reduced[0, 0] / reduced[0, 1] < plain[0, 0] / plain[0, 1]


def test_relabel_by_size_and_merge():
    labels = np.array([2, 2, 0, 1, 1, 1, -1])
    assert pipeline.relabel_by_size(labels).tolist() == [1, 1, 2, 0, 0, 0, -1]
    # topics 0 and 2 share words, topic 1 does not: the smallest (2) folds into 0
    terms = sparse.csr_matrix(
        np.array(
            [[1, 1, 0, 0]] * 3 + [[0, 0, 1, 1]] * 2 + [[1, 1, 0, 0]] + [[0, 1, 0, 1]], dtype=float
        )
    )
    merged = pipeline.merge_topics(np.array([0, 0, 0, 1, 1, 2, -1]), terms, 2)
    assert merged.tolist() == [0, 0, 0, 1, 1, 0, -1]


def test_assign_outliers_by_embedding():
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.8, 0.3]], dtype=float)
    out = pipeline.assign_outliers(np.array([0, 0, 1, 1, -1]), emb)
    assert out.tolist() == [0, 0, 1, 1, 0]


def test_too_few_and_identical_documents():
    with pytest.raises(DataError, match="fewer than min_topic_size=10"):
        tunekit.finetune(task="topics", data=["a b c"] * 3 + ["d e"], min_topic_size=10)
    with pytest.raises(DataError, match="identical"):
        tunekit.finetune(task="topics", data=["same text"] * 20)
    with pytest.raises(DataError, match="fewer than n_topics=5"):
        tunekit.finetune(task="topics", data=["a", "b"], n_topics=5)
    with pytest.raises(DataError, match="no text"):
        tunekit.finetune(task="topics", data=["", "  "])


def test_empty_documents_dropped_and_counted(caplog):
    task = tunekit.get_task("topics")()
    with caplog.at_level(logging.WARNING, logger="tunekit"):
        records = task.read(["one doc", "", "   ", {"text": None}, "two doc"])
    assert [r["text"] for r in records] == ["one doc", "two doc"]
    assert "dropped 3 empty document(s) of 5" in caplog.text


def test_bad_options():
    docs, _ = make_corpus(per_theme=3)
    with pytest.raises(ConfigError, match="min_topic_size"):
        tunekit.finetune(task="topics", data=docs, min_topic_size=1)
    with pytest.raises(ConfigError, match="adapt"):
        tunekit.finetune(task="topics", data=docs, adapt="contrastive")
    with pytest.raises(ConfigError, match="ngram_range"):
        tunekit.finetune(task="topics", data=docs, ngram_range=(2, 1))
    with pytest.raises(ConfigError, match="min_topic_siz"):
        tunekit.finetune(task="topics", data=docs, min_topic_sise=3)  # close match offered
    if not pipeline.umap_available():
        with pytest.raises(ConfigError, match="umap-learn"):
            tunekit.finetune(task="topics", data=docs, reduction="umap")
        assert pipeline.reduction_method("auto") == "pca"


def test_chinese_vocabulary_uses_words():
    pytest.importorskip("jieba", reason="the [zh] extra (jieba) is not installed")
    texts = ["我们喜欢足球比赛", "足球比赛很精彩"]
    vec = pipeline.make_vectorizer(
        language="auto", stop_words="english", ngram_range=(1, 1), min_df=1, texts=texts
    )
    vocab = set(vec.fit(texts).get_feature_names_out())
    assert {"我们", "喜欢", "精彩"} <= vocab and "足" not in vocab  # jieba words, not characters


def test_cli_plots_write_the_topic_map_as_topic_map_png(tmp_path, capsys):
    """``--plots`` draws a topic model's 2D map to topic_map.png, never as the learning
    curve: a run without adaptation has no learning curve to draw."""
    import json

    from tunekit.cli import main
    from tunekit.testing import make_tiny_model

    docs, _ = make_corpus(per_theme=6, seed=4)
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    model = make_tiny_model(tmp_path / "tiny", docs)
    args = ["finetune", "--task", "topics", "--data", str(data), "--model", str(model)]
    code = main(
        [*args, "--n-topics", "3", "--max-length", "32", "--plots", str(tmp_path / "plots")]
    )
    assert code == 0, capsys.readouterr()
    assert "topic map:" in capsys.readouterr().out
    assert (tmp_path / "plots" / "topic_map.png").stat().st_size > 1000
    assert not (tmp_path / "plots" / "learning_curve.png").exists()
