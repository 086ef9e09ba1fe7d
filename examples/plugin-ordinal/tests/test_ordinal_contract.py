"""tunekit-ordinal keeps the tunekit plugin contract (installed, every strategy)."""

from tunekit.testing import TaskContract

TEXTS = {
    1: ["awful awful film", "a terrible mess", "the worst plot"],
    2: ["a weak film", "rather dull", "not good"],
    3: ["an ok film", "fine but plain", "average plot"],
    4: ["a good film", "nice cast", "really enjoyable"],
    5: ["a superb film", "a true masterpiece", "the best cast"],
}
RECORDS = [{"text": t, "label": star} for star, texts in TEXTS.items() for t in texts] * 2


class TestOrdinalContract(TaskContract):
    task = "ordinal"
    records = RECORDS
    predict_inputs = ["a superb cast", "a dull mess", "an ok plot"]
