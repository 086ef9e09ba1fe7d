"""fill-mask benchmark: adapt the embedded MiniLM (no MLM head: a new tied head is trained)
to the Rotten-Tomatoes snippets (vaderSentiment sdist, fetched at run time); held-out
perplexity / masked accuracy before and after, training tokens/s, and the same run
through transformers' ``Trainer`` + ``DataCollatorForLanguageModeling`` for a side-by-side.

    python benchmarks/bench_fill_mask.py [--train 2000 --test 500 --epochs 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time

import torch
from corpora import rotten_tomatoes_split

import tunekit


def hf_baseline(texts, held_out, args):
    """The same model, data, masking and schedule through transformers' own Trainer."""
    from datasets import Dataset
    from transformers import (
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    from tunekit.models import resolve_model

    _, source = resolve_model("minilm")
    tok = AutoTokenizer.from_pretrained(source)
    model = AutoModelForMaskedLM.from_pretrained(source)
    enc = lambda batch: tok(batch["text"], truncation=True, max_length=args.max_length)  # noqa: E731
    train = Dataset.from_dict({"text": texts}).map(enc, batched=True, remove_columns=["text"])
    test = Dataset.from_dict({"text": held_out}).map(enc, batched=True, remove_columns=["text"])
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    import inspect

    # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a ratio)
    accepted = inspect.signature(TrainingArguments.__init__).parameters
    warmup = {"warmup_ratio": 0.1} if "warmup_ratio" in accepted else {"warmup_steps": 0.1}
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            **warmup,
            output_dir=out,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=64,
            learning_rate=args.lr,
            weight_decay=0.01,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            seed=42,
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model, args=targs, train_dataset=train, eval_dataset=test, data_collator=collator
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        loss = trainer.evaluate()["eval_loss"]
    return {
        "train_seconds": round(seconds, 2),
        "eval_loss": round(loss, 4),
        "perplexity": round(math.exp(loss), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers Trainer run")
    args = parser.parse_args()
    logging.getLogger("tunekit").setLevel(logging.ERROR)
    train, test = rotten_tomatoes_split(train_size=args.train, test_size=args.test)
    texts, held_out = [r["text"] for r in train], [r["text"] for r in test]
    opts = dict(
        max_length=args.max_length, batch_size=args.batch_size, progress=False, precision="fp32"
    )

    before = tunekit.finetune(
        task="fill-mask", data=texts[:8], eval_split=0.0, epochs=1, learning_rate=1e-12, **opts
    )
    start = time.perf_counter()
    run = tunekit.finetune(
        task="fill-mask",
        data=texts,
        eval_data=held_out,
        epochs=args.epochs,
        learning_rate=args.lr,
        **opts,
    )
    seconds = time.perf_counter() - start
    tokens = sum(
        len(ids)
        for ids in run.tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]
    )
    result = {
        "model": "minilm (embedded, new tied MLM head)",
        "corpus": f"rotten-tomatoes snippets: {len(texts)} train / {len(held_out)} held out",
        "epochs": args.epochs,
        "before": {k: round(v, 4) for k, v in before.evaluate(held_out).items()},
        "after": {k: round(v, 4) for k, v in run.evaluate(held_out).items()},
        "tunekit_train_seconds": round(run.history.info["train_seconds"], 2),
        "tunekit_wall_seconds": round(seconds, 2),
        "train_tokens_per_second": round(
            tokens * args.epochs / run.history.info["train_seconds"], 1
        ),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2), flush=True)
    if not args.no_hf:
        hf = hf_baseline(texts, held_out, args)
        result["transformers_trainer"] = hf
        result["speed_ratio_tunekit_over_hf"] = round(
            hf["train_seconds"] / run.history.info["train_seconds"], 2
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
