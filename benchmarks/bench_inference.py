"""Inference: ``run.predict`` vs the transformers ``pipeline`` on the same network.

The tunekit bundle written by ``bench_train.py --save`` (a MiniLM classifier whose head
is ``BertForSequenceClassification``'s: CLS → dense + tanh → classifier) is copied
weight for weight into a ``BertForSequenceClassification``, which the
``text-classification`` pipeline serves. One side per process: ``run.predict`` (fp32 or bf16), the pipeline in input
order (its default) or the pipeline fed length-sorted texts with the order restored (its
best: what a careful user does); all classify the same texts of mixed length (1 to 5
Rotten-Tomatoes snippets joined) with the same batch size and max length after one
warm-up batch. Each emits its seconds, its labels (``run_all.py`` counts agreement) and
the batch shapes the encoder saw (for executed FLOPs, padding included).

    python benchmarks/bench_inference.py --side pipeline-sorted [--bundle DIR] [--texts 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import time

from machine import BatchShapes, emit, mixed_texts, peak_rss_mb, token_lengths


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


def sorted_pipeline_call(pipe, tokenizer, texts, batch_size: int, max_length: int):
    """The pipeline fed its texts longest first (the best a careful user does without
    tunekit: sorting costs one tokenizer pass, inside the clock), the order restored."""
    lengths = [
        len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    ]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    out = pipe([texts[i] for i in order], batch_size=batch_size)
    restored = [None] * len(texts)
    for i, result in zip(order, out):
        restored[i] = result
    return restored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", default=None, help="from bench_train.py --save; else a quick one is trained"
    )
    parser.add_argument(
        "--side",
        choices=("tunekit", "pipeline", "pipeline-sorted"),
        default="tunekit",
        help="run.predict, the pipeline in input order (its default) or length-sorted (its best)",
    )
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument(
        "--all-positions",
        action="store_true",
        help="tunekit side: the last layer for every position, not only the CLS row the head "
        "reads, to measure what skipping pays",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="tunekit side: torch.compile the encoder's forward (inductor, dynamic=True, "
        "freezing) after the eager warm-up, so the compile time is inside the clock (a "
        "prototype measured for docs/performance.md, not a tunekit option)",
    )
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    import tunekit

    run = tunekit.load(args.bundle) if args.bundle else quick_run(args.max_length)
    texts = mixed_texts(args.texts)
    lengths = token_lengths(texts, args.max_length)
    recorder = BatchShapes()
    if args.side == "tunekit":
        run.precision = args.precision
        run.model.skip_unread_positions = not args.all_positions
        run.predict(texts[:64], batch_size=args.batch_size)  # warm up, as the pipeline side
        if args.compile:
            import torch
            import torch._inductor.config

            torch._inductor.config.freezing = True  # weights as constants: fused, prepacked
            encoder = run.model.encoder
        with recorder if not args.compile else contextlib.nullcontext():
            start = time.perf_counter()
            if args.compile:  # compiled inside the clock: a user pays it
                encoder.forward = torch.compile(encoder.forward, dynamic=True)
            out = run.predict(texts, batch_size=args.batch_size)
            seconds = time.perf_counter() - start
    else:
        from transformers import pipeline

        if args.precision != "fp32":
            raise SystemExit("the pipeline side runs fp32 (the reference)")
        pipe = pipeline(
            "text-classification",
            model=pipeline_model(run),
            tokenizer=run.tokenizer,
            device=-1,
            truncation=True,
            max_length=args.max_length,
        )
        pipe(texts[:64], batch_size=args.batch_size)  # warm up
        with recorder:
            start = time.perf_counter()
            if args.side == "pipeline":
                out = pipe(texts, batch_size=args.batch_size)
            else:
                out = sorted_pipeline_call(
                    pipe, run.tokenizer, texts, args.batch_size, args.max_length
                )
            seconds = time.perf_counter() - start
    emit(
        {
            "side": args.side,
            "precision": args.precision,
            "texts": len(texts),
            "tokens": sum(lengths),
            "lengths": {
                "min": min(lengths),
                "mean": round(sum(lengths) / len(lengths), 1),
                "max": max(lengths),
            },
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "seconds": round(seconds, 3),
            "compiled": args.compile,
            "texts_per_s": round(len(texts) / seconds, 1),
            "labels": [str(r["label"]) for r in out],
            "lengths_list_for_flops": lengths,
            "batch_shapes": None if args.compile else recorder.shapes,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


if __name__ == "__main__":
    main()
