"""``run.predict()`` / ``run.evaluate()`` encode, run and decode the records a chunk at a
time (``tunekit.run.RECORDS_PER_CHUNK``) so memory stays bounded on large sets: results
equal those of a single chunk, for core and plugin tasks (benchmark:
benchmarks/bench_eval_memory.py)."""

from __future__ import annotations

import random

import pytest

import tunekit
import tunekit.run
from tunekit.testing import make_tiny_model

WORDS = [
    "good",
    "great",
    "bad",
    "awful",
    "film",
    "the",
    "plot",
    "was",
    "a",
    "really",
    "story",
    "cast",
    "john",
    "paris",
]


def classify_rows(n):
    rng = random.Random(0)
    return [
        {"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))), "label": lab}
        for lab in (rng.choice(["pos", "neg"]) for _ in range(n))
    ]


def tagging_rows(n):
    rng = random.Random(1)
    rows = []
    for _ in range(n):
        tokens = [rng.choice(WORDS) for _ in range(rng.randint(2, 10))]
        rows.append(
            {"tokens": tokens, "tags": ["B-X" if t in ("john", "paris") else "O" for t in tokens]}
        )
    return rows


@pytest.mark.parametrize(
    ("task", "rows", "inputs"),
    [
        ("classify", classify_rows, lambda rows: [r["text"] for r in rows]),
        ("token-tagging", tagging_rows, lambda rows: [r["tokens"] for r in rows]),
    ],
)
def test_chunked_predict_and_evaluate_equal_one_chunk(task, rows, inputs, tmp_path, monkeypatch):
    tiny = make_tiny_model(tmp_path / "tiny", [" ".join(WORDS)])
    run = tunekit.finetune(
        task, data=rows(40), model=tiny, epochs=1, eval_split=0, max_length=16, progress=False
    )
    data = rows(150)
    whole_metrics, whole = run.evaluate(data), run.predict(inputs(data))
    monkeypatch.setattr(tunekit.run, "RECORDS_PER_CHUNK", 16)  # 10 chunks, the last partial
    chunked_metrics, chunked = run.evaluate(data), run.predict(inputs(data))
    # other chunks make other length-sorted batches (other padding): floats agree to ~1e-7
    assert close(chunked, whole)
    assert chunked_metrics.keys() == whole_metrics.keys()
    for key, value in whole_metrics.items():
        # eval_loss is a mean of batch means weighted by sequences; for a token-level loss it
        # depends on how sequences are batched, chunks or not
        tolerance = 0.05 if key == "eval_loss" and task == "token-tagging" else 1e-6
        assert chunked_metrics[key] == pytest.approx(value, rel=tolerance), key


def close(a, b) -> bool:
    """Equal structures, with floats equal to 1e-5."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(close, a, b))
    if isinstance(a, float):
        return a == pytest.approx(b, abs=1e-5)
    return a == b
