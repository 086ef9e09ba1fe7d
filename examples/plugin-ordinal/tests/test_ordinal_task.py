"""What ``ordinal`` adds over classification: ordered levels, MAE, no rating out of range."""

import pytest
import torch

import tunekit
from tunekit.testing import make_tiny_model

RATED = [
    ("awful awful film", 1), ("a terrible mess", 1), ("the worst plot", 1),
    ("a weak film", 2), ("rather dull", 2), ("not good", 2),
    ("an ok film", 3), ("fine but plain", 3), ("average plot", 3),
    ("a good film", 4), ("nice cast", 4), ("really enjoyable", 4),
    ("a superb film", 5), ("a true masterpiece", 5), ("the best cast", 5),
]  # fmt: skip
ROWS = [{"text": t, "label": s} for t, s in RATED] * 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    model = make_tiny_model(tmp_path_factory.mktemp("m") / "tiny", [t for t, _ in RATED])
    torch.manual_seed(0)
    return tunekit.finetune(
        "rating", data=ROWS, model=model, eval_data=ROWS[:15], epochs=12, learning_rate=3e-3,
        batch_size=8, max_length=16, progress=False,
    )  # fmt: skip


def test_learns_the_ratings(run):
    assert run.task.levels == [1, 2, 3, 4, 5]
    # chance MAE of a uniform guess over 5 levels is 1.6; the training texts are learnt
    assert run.metrics["mae"] < 0.5, run.history
    assert run.metrics["accuracy"] > 0.6


def test_predictions_are_levels_with_a_distribution(run):
    preds = run.predict(["a superb film", "the worst plot"])
    assert [p["label"] for p in preds] == [5, 1]
    for p in preds:
        assert set(p["probabilities"]) == {1, 2, 3, 4, 5}
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)
        assert 1.0 <= p["expected"] <= 5.0


def test_one_level_or_a_non_integer_rating_is_a_data_error():
    task = tunekit.get_task("ordinal")()
    with pytest.raises(tunekit.DataError, match="ordinal regression needs two levels"):
        task.setup(task.read([{"text": "a", "label": 3}, {"text": "b", "label": 3}]))
    with pytest.raises(tunekit.DataError, match="data record 1: rating 2.5 is not an integer"):
        task.read([{"text": "a", "label": 3}, {"text": "b", "label": 2.5}])
