"""Every registered strategy works with every pair task (the tunekit plugin contract:
falling loss, one prediction per input, bitwise-equal bundle round trip). The contract
parametrizes over ``tunekit.list_strategies()``, so strategies added later are covered."""

from tunekit.testing import TaskContract

PAIRS = [
    ("how old are you", "what is your age", 1),
    ("how old are you", "where do you live", 0),
    ("the cat sat on the mat", "a cat was sitting on the mat", 1),
    ("the cat sat on the mat", "the stock market fell today", 0),
    ("i like green tea", "green tea is what i like", 1),
    ("i like green tea", "the train was late again", 0),
] * 2
PREDICT = [
    ("how old are you", "what is your age"),
    {"text_a": "i like green tea", "text_b": "the train was late"},
]


class TestPairSimContract(TaskContract):
    task = "pair-sim"
    records = [{"text_a": a, "text_b": b, "label": y} for a, b, y in PAIRS]
    predict_inputs = PREDICT


class TestPairClsContract(TaskContract):
    task = "pair-cls"
    records = [
        {"premise": a, "hypothesis": b, "label": ["neutral", "entailment"][y]} for a, b, y in PAIRS
    ] + [
        {"premise": a, "hypothesis": "it is not " + a, "label": "contradiction"}
        for a, _, _ in PAIRS[:6]
    ]
    predict_inputs = [{"premise": "how old are you", "hypothesis": "what is your age"}]


class TestStsContract(TaskContract):
    task = "sts"
    records = [{"sentence1": a, "sentence2": b, "score": 4.0 * y + 0.5} for a, b, y in PAIRS]
    predict_inputs = PREDICT


class TestBiEncoderContract(TaskContract):
    """The siamese architecture; the projection gives a frozen encoder something to learn."""

    task = "pair-sim"
    records = [{"question1": a, "question2": b, "is_duplicate": y} for a, b, y in PAIRS]
    predict_inputs = PREDICT
    options = {"architecture": "bi-encoder", "projection": 16}
