"""tunekit vs the transformers Trainer on the same work, measured in the same run.

Same model (embedded MiniLM), data (Rotten-Tomatoes snippets, fixed split), epochs,
batch size, learning rate, warmup, max length and seed. Reports wall seconds, samples/s,
test accuracy and the ratios; then inference: ``run.predict`` vs the transformers
``pipeline`` (on the Trainer's model) over mixed-length texts.

    python benchmarks/bench_vs_hf.py [--train 2000 --test 1000 --epochs 1 --predict 2000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import tunekit
from tunekit.corpora import rotten_tomatoes_split
from tunekit.models import embedded_model_path


def train_hf(train, test, args, path):
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(path)
    labels = sorted({r["label"] for r in train})
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={x: i for i, x in enumerate(labels)},
    )

    def ds(rows):
        d = Dataset.from_list(
            [{"text": r["text"], "label": labels.index(r["label"])} for r in rows]
        )
        return d.map(
            lambda b: tok(b["text"], truncation=True, max_length=args.max_length), batched=True
        )

    train_ds, test_ds = ds(train), ds(test)
    import inspect

    accepted = inspect.signature(TrainingArguments.__init__).parameters
    # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a ratio).
    warmup_kwargs = {"warmup_ratio": 0.1} if "warmup_ratio" in accepted else {"warmup_steps": 0.1}
    extra = (
        {"group_by_length": True}
        if args.hf_group_by_length and "group_by_length" in accepted
        else {}
    )
    targs = TrainingArguments(
        output_dir="/tmp/tunekit-bench-hf",
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size * 2,
        num_train_epochs=args.epochs,
        learning_rate=5e-5,
        **warmup_kwargs,
        weight_decay=0.01,
        seed=42,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_strategy="no",
        **extra,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model, args=targs, train_dataset=train_ds, data_collator=DataCollatorWithPadding(tok)
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    pred = trainer.predict(test_ds).predictions.argmax(-1)
    acc = float((pred == np.array(test_ds["label"])).mean())
    return model, tok, seconds, acc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--predict", type=int, default=2000)
    parser.add_argument("--hf-group-by-length", action="store_true")
    args = parser.parse_args()
    path = str(embedded_model_path())
    train, test = rotten_tomatoes_split(train_size=args.train, test_size=args.test)
    strip = lambda rows: [{"text": r["text"], "label": r["label"]} for r in rows]  # noqa: E731

    start = time.perf_counter()
    run = tunekit.finetune(
        task="classify", model=path, data=strip(train), eval_split=0, epochs=args.epochs,
        batch_size=args.batch_size, max_length=args.max_length, learning_rate=5e-5, seed=42, pooling="cls",
    )  # fmt: skip
    tk_seconds = time.perf_counter() - start
    tk_acc = run.evaluate(strip(test))["accuracy"]
    hf_model, tok, hf_seconds, hf_acc = train_hf(train, test, args, path)

    # Inference: mixed lengths, repeated from the corpus.
    texts = [r["text"] for r in (train + test)]
    texts = (texts * (args.predict // len(texts) + 1))[: args.predict]
    from transformers import pipeline

    pipe = pipeline(
        "text-classification",
        model=hf_model,
        tokenizer=tok,
        device=-1,
        truncation=True,
        max_length=args.max_length,
    )
    t0 = time.perf_counter()
    pipe(texts, batch_size=64)
    hf_pred_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run.predict(texts, batch_size=64)
    tk_pred_s = time.perf_counter() - t0

    n = len(train) * args.epochs
    result = {
        "train": {
            "tunekit_seconds": round(tk_seconds, 1),
            "hf_trainer_seconds": round(hf_seconds, 1),
            "tunekit_samples_per_s": round(n / tk_seconds, 1),
            "hf_samples_per_s": round(n / hf_seconds, 1),
            "speedup": round(hf_seconds / tk_seconds, 2),
            "tunekit_accuracy": round(tk_acc, 4),
            "hf_accuracy": round(hf_acc, 4),
        },
        "predict": {
            "texts": len(texts),
            "tunekit_texts_per_s": round(len(texts) / tk_pred_s, 1),
            "pipeline_texts_per_s": round(len(texts) / hf_pred_s, 1),
            "speedup": round(hf_pred_s / tk_pred_s, 2),
        },
        "config": vars(args),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
