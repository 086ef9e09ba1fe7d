"""Every registered strategy works with token-tagging, softmax and CRF heads (the tunekit
plugin contract: falling loss, one prediction per input, bitwise-equal bundle round trip).
The contract parametrizes over ``tunekit.list_strategies()``, so strategies added later
are covered."""

import tunekit
from tunekit.testing import TaskContract

SENTENCES = [
    (["John", "Smith", "lives", "in", "Paris"], ["B-PER", "I-PER", "O", "O", "B-LOC"]),
    (["we", "met", "Mary", "in", "London", "today"], ["O", "O", "B-PER", "O", "B-LOC", "O"]),
    (["Acme", "Corp", "opened", "in", "Berlin"], ["B-ORG", "I-ORG", "O", "O", "B-LOC"]),
    (["Anna", "works", "for", "Globex"], ["B-PER", "O", "O", "B-ORG"]),
] * 4
PREDICT = ["John Smith lives in Berlin", ["we", "met", "Anna"], {"tokens": ["Acme", "Corp"]}]


class TestSoftmaxContract(TaskContract):
    task = "token-tagging"
    records = [{"tokens": t, "tags": g} for t, g in SENTENCES]
    predict_inputs = PREDICT


class TestCrfContract(TaskContract):
    task = "ner"
    records = [{"tokens": t, "tags": g} for t, g in SENTENCES]
    predict_inputs = PREDICT
    options = {"head": "crf", "scheme": "bioes"}


def test_contract_covers_every_registered_strategy():
    assert set(tunekit.list_strategies()) >= {
        "full",
        "frozen",
        "lora",
        "peft",
        "layer-mix",
        "top-k",
    }
