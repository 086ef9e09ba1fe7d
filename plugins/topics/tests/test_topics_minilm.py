"""The topics task end to end with the embedded MiniLM on a generated four-theme corpus."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from topic_corpus import THEMES, make_corpus, purity
from tunekit_topics import TopicRun

import tunekit


def majority(topics, gold):
    """{topic: its majority theme}."""
    out: dict[int, Counter] = {}
    for t, g in zip(topics, gold):
        out.setdefault(t, Counter())[g] += 1
    return {t: c.most_common(1)[0][0] for t, c in out.items()}


def test_topics_recovered_with_outliers(minilm_run, corpus):
    docs, gold = corpus
    run = minilm_run
    assert isinstance(run, TopicRun)
    assert len(run.topics_) == len(docs)
    assert purity(run.topics_, gold) > 0.8
    assert run.metrics["n_topics"] == len(THEMES)
    noise_topics = [t for t, g in zip(run.topics_, gold) if g == "noise"]
    assert noise_topics.count(-1) >= 2  # the noise documents are outliers
    assert all(t != -1 for t, g in zip(run.topics_, gold) if g != "noise")
    # each topic's top words come from its theme
    names = majority(run.topics_, gold)
    for topic in range(len(THEMES)):
        words = [w for w, _ in run.get_topic(topic)[:5]]
        assert set(words) <= set(THEMES[names[topic]]), (topic, words)


def test_topic_info_table(minilm_run, corpus):
    info = minilm_run.topic_info()
    assert list(info.columns) == ["Topic", "Count", "Name", "Representation", "Representative_Docs"]
    assert info["Topic"].tolist()[0] == -1
    assert info["Count"].sum() == len(corpus[0])
    assert info["Count"].tolist()[1:] == sorted(
        info["Count"].tolist()[1:], reverse=True
    )  # 0 is the largest
    row = info[info.Topic == 0].iloc[0]
    assert row.Name.startswith("0_") and len(row.Representation) == 10
    assert len(row.Representative_Docs) == 3 and all(
        d in corpus[0] for d in row.Representative_Docs
    )


def test_metrics_in_history(minilm_run):
    m = minilm_run.metrics
    assert 0.2 < m["npmi"] <= 1.0  # clear themes: top words co-occur
    assert m["diversity"] == pytest.approx(1.0)
    assert 0 < m["outlier_share"] < 0.1
    row = minilm_run.history[-1]
    assert row["stage"] == "topics" and row["npmi"] == m["npmi"]


def test_transform_new_documents(minilm_run, corpus):
    docs, gold = corpus
    names = majority(minilm_run.topics_, gold)
    new_docs, new_gold = make_corpus(per_theme=3, seed=99)
    topics, probs = minilm_run.transform(new_docs + ["Qwerty flamingo carburettor."])
    assert [names[t] for t in topics[:-1]] == new_gold
    assert topics[-1] == -1  # unlike every topic
    assert probs.shape == (len(new_docs) + 1,) and (probs[:-1] > 0.5).all()
    natural = minilm_run.transform(["The rocket reached orbit around the moon"])[0][0]
    assert names[natural] == "space"


def test_save_load_round_trip(minilm_run, tmp_path):
    path = minilm_run.save(tmp_path / "topics")
    loaded = tunekit.load(path, device="cpu")
    assert isinstance(loaded, TopicRun)
    assert loaded.topics_ == minilm_run.topics_
    assert loaded.topic_info().equals(minilm_run.topic_info())
    for key, value in minilm_run.model.head.state_dict().items():
        assert torch_equal(value, loaded.model.head.state_dict()[key]), key
    new_docs, _ = make_corpus(per_theme=2, seed=5)
    a, pa = minilm_run.transform(new_docs)
    b, pb = loaded.transform(new_docs)
    assert a == b and np.array_equal(pa, pb)
    # frozen encoder: the bundle re-attaches to MiniLM instead of storing it
    assert (tmp_path / "topics" / "model.safetensors").stat().st_size < 1_000_000
    assert loaded.metrics == minilm_run.metrics


def torch_equal(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool((a.cpu() == b.cpu()).all())


def test_plots(minilm_run, tmp_path):
    import matplotlib.image as mpimg

    for path in (
        minilm_run.plot_topics(tmp_path / "map.png"),
        minilm_run.plot_barchart(tmp_path / "bars.png"),
    ):
        image = mpimg.imread(path)
        assert image.ndim == 3 and image.shape[0] > 200
        assert image[..., :3].std() > 0.05  # not blank


def test_seeded_runs_reproducible_and_options(corpus):
    docs, gold = corpus
    common = dict(task="topics", data=docs, model="minilm", reduction="pca", max_length=32)
    kmeans = tunekit.finetune(n_topics=4, **common)
    assert -1 not in kmeans.topics_ and purity(kmeans.topics_, gold) > 0.8
    again = tunekit.finetune(n_topics=4, **common)
    assert again.topics_ == kmeans.topics_
    assert np.array_equal(again.probabilities_, kmeans.probabilities_)
    merged = tunekit.finetune(
        min_topic_size=5, nr_topics=2, reduce_outliers=True, ngram_range=(1, 2), **common
    )
    assert sorted(set(merged.topics_)) == [0, 1]  # merged down to two, outliers reassigned
    assert merged.metrics["outlier_share"] > 0  # the share before reassignment is reported
    assert any(" " in w for w in merged.task.topics["vocabulary"])  # bigrams in the vocabulary


def test_umap_reduction_when_installed(corpus):
    pytest.importorskip("umap")
    docs, gold = corpus
    run = tunekit.finetune(
        task="topics", data=docs, model="minilm", min_topic_size=5, max_length=32
    )
    assert run.task.topics["reduction"] == "umap" and run.task.topics["map_reduction"] == "umap"
    assert run.metrics["n_topics"] == len(THEMES) and purity(run.topics_, gold) > 0.8
    assert run.model.head.reducer_components.numel() == 0  # a fitted UMAP is not stored
