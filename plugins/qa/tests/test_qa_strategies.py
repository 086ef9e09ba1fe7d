"""Every registered strategy works with ``qa`` (the tunekit plugin contract: falling loss,
one prediction per input, bitwise-equal bundle round trip), for SQuAD 1.1-style data,
SQuAD 2.0-style data with unanswerable questions, and Chinese. The contract parametrizes
over ``tunekit.list_strategies()``, so strategies added later are covered."""

from qa_items import generate_items

import tunekit
from tunekit.testing import TaskContract

EN = generate_items(16, seed=11, people=2)
V2 = generate_items(16, seed=12, people=2, unanswerable=0.3)
ZH = generate_items(16, seed=13, people=2, language="zh")


def _inputs(items):
    return [{"question": i["question"], "context": i["context"]} for i in items[:3]]


class TestQAContract(TaskContract):
    task = "qa"
    records = EN
    predict_inputs = _inputs(EN)


class TestUnanswerableContract(TaskContract):
    task = "squad"
    records = V2
    predict_inputs = _inputs(V2)
    options = {"allow_unanswerable": True}
    strategies = ("full", "lora")


class TestChineseContract(TaskContract):
    task = "extractive-qa"
    records = ZH
    predict_inputs = _inputs(ZH)
    strategies = ("full", "frozen")


def test_contract_covers_every_registered_strategy():
    assert set(tunekit.list_strategies()) >= {
        "full",
        "frozen",
        "lora",
        "peft",
        "layer-mix",
        "top-k",
    }
    assert any(not i["answers"]["text"] for i in V2)
