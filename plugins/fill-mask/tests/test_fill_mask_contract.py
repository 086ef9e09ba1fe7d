"""fill-mask keeps the tunekit plugin contract (every registered strategy)."""

from tunekit.testing import TaskContract

CORPUS = [
    "the capital of france is paris .",
    "the cat sat on the mat .",
    "a good film with a great cast .",
    "we walked to the park in the morning .",
] * 4


class TestFillMaskContract(TaskContract):
    task = "fill-mask"
    records = [{"text": t} for t in CORPUS]
    predict_inputs = ["the [MASK] sat on the mat .", "the capital of france is [MASK] ."]
    options = {"mlm_probability": 0.3}
