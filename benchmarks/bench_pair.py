"""Pair benchmark: ``sts`` on the Lee et al. (2005) document-similarity corpus, embedded MiniLM.

The data ships inside gensim's wheel (``gensim/test/test_data/lee.cor``: 50 news
documents; ``similarities0-1.txt``: the mean human similarity of every pair, 0-1). It is
downloaded at run time into the tunekit cache, never copied into the repository.

Split by document, so no test document is seen in training: pairs among documents 0-34
train (595 pairs), pairs among documents 35-49 test (105 pairs). Reported per run:
Pearson / Spearman / MSE on the test pairs and training seconds. The zero-shot line is
all-MiniLM-L6-v2's own mean-pooled cosine (it was trained as a sentence embedder).

    python benchmarks/bench_pair.py [--epochs 3 --max-length 128 --runs cross:full,cross:lora,bi:full]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from corpora import fetch_package_file

import tunekit
from tunekit.metrics import regression_metrics

GENSIM = ("gensim", "4.4.0")


def lee_pairs() -> tuple[list[str], np.ndarray]:
    """The 50 Lee documents and their 50x50 human similarity matrix (upper triangle used)."""
    docs_path = fetch_package_file(*GENSIM, "gensim/test/test_data/lee.cor", sdist=False)
    sims_path = fetch_package_file(
        *GENSIM, "gensim/test/test_data/similarities0-1.txt", sdist=False
    )
    docs = [
        line.strip()
        for line in docs_path.read_text(encoding="latin-1").splitlines()
        if line.strip()
    ]
    sims = np.loadtxt(sims_path)
    assert len(docs) == 50 and sims.shape == (50, 50)
    return docs, sims


def split(docs: list[str], sims: np.ndarray, *, cut: int = 35) -> tuple[list[dict], list[dict]]:
    train, test = [], []
    for i in range(len(docs)):
        for j in range(i + 1, len(docs)):
            row = {"text_a": docs[i], "text_b": docs[j], "score": float(sims[i, j])}
            if i < cut and j < cut:
                train.append(row)
            elif i >= cut and j >= cut:
                test.append(row)
    return train, test


@torch.no_grad()
def zero_shot(test: list[dict], max_length: int) -> dict[str, float]:
    from tunekit.assembly import load_backbone
    from tunekit.head import pool

    backbone = load_backbone("minilm")
    texts = sorted({r["text_a"] for r in test} | {r["text_b"] for r in test})
    enc = backbone.tokenizer(
        texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    hidden = backbone.model(**enc).last_hidden_state
    vectors = torch.nn.functional.normalize(pool(hidden, enc["attention_mask"], "mean"), dim=-1)
    index = {t: i for i, t in enumerate(texts)}
    pred = [float(vectors[index[r["text_a"]]] @ vectors[index[r["text_b"]]]) for r in test]
    return regression_metrics([r["score"] for r in test], pred)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--runs", default="cross:full,cross:lora,bi:full")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    docs, sims = lee_pairs()
    train, test = split(docs, sims)
    results = [
        {"run": "zero-shot MiniLM cosine", **zero_shot(test, args.max_length), "train_seconds": 0.0}
    ]
    print(json.dumps(results[-1]), flush=True)
    for spec in args.runs.split(","):
        arch, strategy = spec.split(":")
        options = dict(
            data=train,
            eval_split=0,
            epochs=args.epochs,
            batch_size=args.batch_size,
            max_length=args.max_length,
            learning_rate=1e-3 if strategy == "lora" else 5e-5,
            precision=args.precision,
            progress=False,
            seed=13,
            score_range=(0.0, 1.0),
            architecture="bi-encoder" if arch == "bi" else "cross-encoder",
        )
        start = time.perf_counter()
        run = tunekit.finetune(task="sts", strategy=strategy, **options)
        seconds = time.perf_counter() - start
        metrics = run.evaluate(test)
        results.append(
            {"run": f"{arch}-encoder {strategy}", **metrics, "train_seconds": round(seconds, 1)}
        )
        print(json.dumps(results[-1]), flush=True)
    print(
        f"\nLee 2005 doc similarity, {len(train)} train / {len(test)} test pairs, max_length {args.max_length}, "
        f"{args.epochs} epochs, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print("| run | Pearson | Spearman | MSE | train s |\n|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['run']} | {r['pearson']:.3f} | {r['spearman']:.3f} | {r['mse']:.4f} | {r['train_seconds']} |"
        )


if __name__ == "__main__":
    main()
