"""Foundation benchmark: fine-tune `classify` (strategy full, embedded MiniLM) on the
Rotten-Tomatoes snippets (fixed seeded split) and report accuracy, train seconds, samples/s.

    python benchmarks/bench_classify.py [--train 2000 --test 1000 --epochs 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch
from corpora import rotten_tomatoes_split

import tunekit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    train, test = rotten_tomatoes_split(train_size=args.train, test_size=args.test)
    strip = lambda rows: [{"text": r["text"], "label": r["label"]} for r in rows]  # noqa: E731
    start = time.perf_counter()
    run = tunekit.finetune(
        task="classify",
        data=strip(train),
        eval_split=0,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        learning_rate=5e-5,
        precision=args.precision,
    )
    train_seconds = time.perf_counter() - start
    metrics = run.evaluate(strip(test))
    result = {
        "task": "classify",
        "strategy": "full",
        "model": "minilm (embedded)",
        "train_examples": len(train),
        "test_examples": len(test),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "precision": args.precision,
        "accuracy": round(metrics["accuracy"], 4),
        "macro_f1": round(metrics["macro_f1"], 4),
        "train_seconds": round(train_seconds, 1),
        "samples_per_second": round(len(train) * args.epochs / train_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "tunekit": tunekit.__version__,
        "torch": torch.__version__,
    }
    print(run.history)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
