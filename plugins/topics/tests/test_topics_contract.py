"""The plugin contract kit (tunekit.testing.check_task) on the topics task."""

from __future__ import annotations

from topic_corpus import make_corpus

from tunekit.testing import check_task


def test_topics_task_keeps_the_contract():
    docs, _ = make_corpus(per_theme=6, seed=1)
    report = check_task(
        "topics",
        [{"text": d} for d in docs],
        predict_inputs=docs[:3],
        strategies=["full", "lora"],
        options={"n_topics": 4, "reduction": "pca", "adapt": "simcse"},
        training={"epochs": 1, "max_length": 32, "learning_rate": 1e-3},
    )
    assert set(report.strategies) == {"full", "lora"}
