"""The plugin author kit (``tunekit.testing``) on the built-in ``classify`` task, and on
broken tasks it must catch."""

from __future__ import annotations

import pytest
import torch

import tunekit
from tunekit.classify import ClassifyTask
from tunekit.testing import (
    ContractError,
    TaskChecker,
    TaskContract,
    check_task,
    make_tiny_model,
    registered_strategies,
)

POS = ["a good film", "great acting", "i loved it", "wonderful fun", "superb cast", "really good"]
NEG = ["a bad film", "terrible acting", "i hated it", "boring and dull", "awful plot", "really bad"]
RECORDS = (
    [{"text": t, "label": "pos"} for t in POS] + [{"text": t, "label": "neg"} for t in NEG]
) * 2
INPUTS = ["a good film", "awful plot", "great fun"]


class TestClassifyContract(TaskContract):
    """``classify`` passes every check, with every registered strategy."""

    task = "classify"
    records = RECORDS
    predict_inputs = INPUTS
    training = {"epochs": 4}  # (CI time) the loss falls within 4 epochs on 24 records


def test_check_task_reports_every_strategy(tmp_path):
    model = make_tiny_model(tmp_path / "tiny", [r["text"] for r in RECORDS])
    report = check_task(
        ClassifyTask,
        RECORDS,
        predict_inputs=INPUTS,
        model_path=model,
        strategies=["full", "frozen"],
        training={"epochs": 4},
    )
    assert report.task == "classify"
    assert report.plugin == "tunekit.classify"
    assert report.num_records == len(RECORDS) == report.num_features
    assert list(report.strategies) == ["full", "frozen"]
    for result in report.strategies.values():
        assert result.losses[-1] < result.losses[0]
    assert (
        report.strategies["full"].stores_encoder and not report.strategies["frozen"].stores_encoder
    )


def test_contract_parametrizes_over_registered_strategies():
    assert set(registered_strategies()) >= {"full", "frozen", "lora", "peft", "layer-mix", "top-k"}


# ---- the contract catches broken tasks ------------------------------------------------------


class _Unregistered(ClassifyTask):
    name = "contract-unregistered"


class _NoExampleIndex(ClassifyTask):
    def encode(self, records, tokenizer, *, max_length, with_labels):
        features = super().encode(
            records, tokenizer, max_length=max_length, with_labels=with_labels
        )
        for f in features:
            del f["example_index"]
        return features


class _AcceptsEmpty(ClassifyTask):
    def read(self, source, *, name="data"):
        return [] if source == [] else super().read(source, name=name)


class _NoLearning(ClassifyTask):
    def loss(self, outputs, batch):
        return outputs["logits"].sum() * 0.0 + torch.tensor(1.0)


class _TokenLevelHead(ClassifyTask):
    """Builds a head whose level says it predicts per token: not what classify takes."""

    def build_head(self, backbone):
        head = super().build_head(backbone)
        head.level = "token"
        return head


class _DropsOnePrediction(ClassifyTask):
    def decode(self, outputs, features, records, **options):
        return super().decode(outputs, features, records, **options)[:-1]


@pytest.fixture
def registered(monkeypatch):
    """Swap the registered ``classify`` class for a broken variant."""
    from tunekit.plugins import get_state

    tasks = get_state().tasks

    def swap(cls):
        cls.name = "classify"
        monkeypatch.setitem(tasks._items, "classify", cls)
        return cls

    return swap


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert", [r["text"] for r in RECORDS])


def checker(task, tiny, tmp_path):
    return TaskChecker(task, RECORDS, predict_inputs=INPUTS, model_path=tiny, workdir=tmp_path)


def test_unregistered_task_fails(tiny, tmp_path):
    with pytest.raises(ContractError, match="no plugin registers it.*tunekit_register_tasks"):
        checker(_Unregistered, tiny, tmp_path).check_registered()


def test_class_not_the_registered_one_fails(tiny, tmp_path):
    class Impostor(ClassifyTask):
        pass

    with pytest.raises(ContractError, match="registered to tunekit.classify.ClassifyTask"):
        checker(Impostor, tiny, tmp_path).check_registered()


def test_missing_example_index_fails(tiny, tmp_path, registered):
    with pytest.raises(ContractError, match="example_index=None"):
        checker(registered(_NoExampleIndex), tiny, tmp_path).check_encode()


def test_accepting_empty_data_fails(tiny, tmp_path, registered):
    with pytest.raises(ContractError, match=r"read\(\[\]\) did not raise"):
        checker(registered(_AcceptsEmpty), tiny, tmp_path).check_bad_input()


def test_loss_that_does_not_fall_fails(tiny, tmp_path, registered):
    with pytest.raises(ContractError, match=r"train\[frozen\].*did not fall"):
        checker(registered(_NoLearning), tiny, tmp_path).check_strategy("frozen")


def test_head_of_a_level_the_task_does_not_take_fails(tiny, tmp_path, registered):
    with pytest.raises(
        ContractError, match=r"head\[frozen\].*level='token'.*head_levels=\('sequence',\)"
    ):
        checker(registered(_TokenLevelHead), tiny, tmp_path).check_strategy("frozen")


def test_wrong_prediction_count_fails(tiny, tmp_path, registered):
    with pytest.raises(ContractError, match="predict\\(\\) of 3 inputs gave 2 predictions"):
        checker(registered(_DropsOnePrediction), tiny, tmp_path).check_strategy("frozen")


def test_round_trip_that_changes_outputs_fails(tiny, tmp_path, monkeypatch):
    real_load = tunekit.api.load

    def load_and_perturb(path, **kw):
        run = real_load(path, **kw)
        with torch.no_grad():
            next(run.model.head.parameters()).add_(1e-3)
        return run

    monkeypatch.setattr(tunekit.api, "load", load_and_perturb)
    with pytest.raises(ContractError, match=r"round trip\[frozen\].*differ"):
        checker("classify", tiny, tmp_path).check_strategy("frozen")
