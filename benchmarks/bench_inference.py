"""Inference: ``run.predict`` vs the transformers ``pipeline`` on the same network.

The tunekit bundle written by ``bench_train.py --save`` (a MiniLM classifier whose head
is ``BertForSequenceClassification``'s: CLS → dense + tanh → classifier) is copied
weight for weight into a ``BertForSequenceClassification``, which the
``text-classification`` pipeline serves. Both classify the same texts of mixed length
(1 to 5 Rotten-Tomatoes snippets joined) with the same batch size and max length; the
result gives texts/s of both, their ratio, and how many labels agree (all, expected).
``run.predict`` in bf16 is timed too where the CPU has native bf16.

    python benchmarks/bench_inference.py [--bundle DIR] [--texts 5000 --batch-size 64]
"""

from __future__ import annotations

import argparse
import time

from machine import emit, mixed_texts, peak_rss_mb, token_lengths


def pipeline_model(run):
    """A ``BertForSequenceClassification`` with exactly the weights of *run*."""
    import torch
    from transformers import BertForSequenceClassification

    config = run.model.encoder.config.__class__.from_dict(run.model.encoder.config.to_dict())
    config.num_labels = len(run.labels)
    config.id2label = dict(enumerate(run.labels))
    config.label2id = {label: i for i, label in enumerate(run.labels)}
    hf = BertForSequenceClassification(config).eval()
    missing, unexpected = hf.bert.load_state_dict(run.model.encoder.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("pooler.") for k in missing), (missing, unexpected)
    dense, classifier = run.model.head.net[1], run.model.head.net[4]
    with torch.no_grad():
        hf.bert.pooler.dense.weight.copy_(dense.weight)
        hf.bert.pooler.dense.bias.copy_(dense.bias)
        hf.classifier.weight.copy_(classifier.weight)
        hf.classifier.bias.copy_(classifier.bias)
    return hf


def quick_run(max_length: int):
    """A MiniLM classifier with the pooler head, fine-tuned briefly (no bundle given)."""
    from bench_train import POOLER_HEAD
    from machine import rt_split

    import tunekit

    train, _ = rt_split(500, 0)
    return tunekit.finetune(
        task="classify", data=train, eval_split=0, epochs=1, batch_size=32,
        max_length=max_length, precision="fp32", progress=False, **POOLER_HEAD,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", default=None, help="from bench_train.py --save; else a quick one is trained"
    )
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--bf16", action="store_true", help="also time run.predict in bf16")
    args = parser.parse_args()

    from transformers import pipeline

    import tunekit

    run = tunekit.load(args.bundle) if args.bundle else quick_run(args.max_length)
    texts = mixed_texts(args.texts)
    lengths = token_lengths(texts, args.max_length)
    pipe = pipeline(
        "text-classification",
        model=pipeline_model(run),
        tokenizer=run.tokenizer,
        device=-1,
        truncation=True,
        max_length=args.max_length,
    )
    pipe(texts[:64], batch_size=args.batch_size)  # warm up both sides alike
    run.predict(texts[:64], batch_size=args.batch_size)

    start = time.perf_counter()
    theirs = pipe(texts, batch_size=args.batch_size)
    pipe_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = run.predict(texts, batch_size=args.batch_size)
    tk_s = time.perf_counter() - start
    agree = sum(a["label"] == b["label"] for a, b in zip(ours, theirs))
    result = {
        "texts": len(texts),
        "tokens": sum(lengths),
        "lengths": {
            "min": min(lengths),
            "mean": round(sum(lengths) / len(lengths), 1),
            "max": max(lengths),
        },
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "tunekit_seconds": round(tk_s, 2),
        "pipeline_seconds": round(pipe_s, 2),
        "tunekit_texts_per_s": round(len(texts) / tk_s, 1),
        "pipeline_texts_per_s": round(len(texts) / pipe_s, 1),
        "speedup": round(pipe_s / tk_s, 2),
        "labels_agree": agree,
        "lengths_list_for_flops": lengths,
    }
    if args.bf16:
        run.precision = "bf16"
        run.predict(texts[:64], batch_size=args.batch_size)
        start = time.perf_counter()
        ours_bf16 = run.predict(texts, batch_size=args.batch_size)
        bf16_s = time.perf_counter() - start
        result.update(
            tunekit_bf16_seconds=round(bf16_s, 2),
            tunekit_bf16_texts_per_s=round(len(texts) / bf16_s, 1),
            bf16_speedup_vs_pipeline=round(pipe_s / bf16_s, 2),
            bf16_labels_agree=sum(a["label"] == b["label"] for a, b in zip(ours_bf16, theirs)),
        )
    result["peak_rss_mb"] = peak_rss_mb()
    emit(result)


if __name__ == "__main__":
    main()
