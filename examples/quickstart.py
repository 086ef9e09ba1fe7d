"""Fine-tune the embedded MiniLM on real movie-review snippets and show what it learned.

Run with ``nox -s demo`` (or ``PYTHONPATH=benchmarks python examples/quickstart.py`` where
tunekit[embedded] is installed: the corpus fetcher lives in ``benchmarks/corpora.py``, outside
the tunekit wheel).
"""

from corpora import rotten_tomatoes_split  # benchmarks/corpora.py

import tunekit

train, test = rotten_tomatoes_split(train_size=2000, test_size=500)
print(f"Rotten-Tomatoes snippets: {len(train)} train, {len(test)} test")
run = tunekit.finetune(
    task="classify",
    data=[{"text": r["text"], "label": r["label"]} for r in train],
    eval_data=[{"text": r["text"], "label": r["label"]} for r in test],
    epochs=2,
    batch_size=32,
    learning_rate=5e-5,
    max_length=64,
)
print(run.history)
texts = [
    "what a wonderful film",
    "a dull, lifeless mess",
    "the plot is thin but the actors are a joy to watch",
]
for text, pred in zip(texts, run.predict(texts)):
    print(f"{pred['label']:>4} {pred['score']:.3f}  {text}")
