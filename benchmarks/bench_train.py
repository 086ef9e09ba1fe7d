"""Full fine-tune, tunekit vs the transformers ``Trainer``, one side per process.

Same model (embedded MiniLM), same network (CLS token → dense 384 + tanh → classifier,
i.e. ``BertForSequenceClassification``'s pooler head; tunekit: ``head="mlp",
hidden=[384], activation="tanh", pooling="cls"``), same data (Rotten-Tomatoes snippets,
fixed seeded split), epochs, batch size, learning rate, warmup, weight decay, max length,
seed and precision. Each side reports: training-loop seconds, end-to-end seconds (load +
tokenize + train), samples/s, test accuracy and peak RSS.

    python benchmarks/bench_train.py --side tunekit [--precision bf16] [--save DIR]
    python benchmarks/bench_train.py --side hf

``benchmarks/run_all.py`` runs both sides and compares them.
"""

from __future__ import annotations

import argparse
import time

from machine import emit, peak_rss_mb, rt_split

#: tunekit's head equal to BertForSequenceClassification's (pooler dense + tanh, classifier)
POOLER_HEAD = dict(head="mlp", hidden=[384], activation="tanh", pooling="cls", dropout=0.1)


def tunekit_side(args) -> dict:
    import tunekit
    from tunekit.models import embedded_model_path

    train, test = rt_split(args.train, args.test)
    # the HF side imports its model classes before its clock starts; so does this side
    from transformers import AutoModel, AutoTokenizer, BertModel  # noqa: F401

    tunekit.plugins.get_state()
    start = time.perf_counter()
    run = tunekit.finetune(
        task="classify",
        model=str(embedded_model_path()),
        data=train,
        eval_split=0,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        learning_rate=args.learning_rate,
        warmup_ratio=0.1,
        weight_decay=0.01,
        seed=42,
        precision=args.precision,
        compile={"true": True, "false": False}.get(str(args.compile).lower(), args.compile),
        progress=False,
        **POOLER_HEAD,
    )
    end_to_end = time.perf_counter() - start
    loop = run.history.info["train_seconds"]
    accuracy = run.evaluate(test)["accuracy"]
    if args.save:
        run.save(args.save)
    return {
        "side": "tunekit",
        "loop_seconds": round(loop, 2),
        "end_to_end_seconds": round(end_to_end, 2),
        "accuracy": round(accuracy, 4),
        "compiled": run.history.info.get("compiled"),
    }


def hf_side(args) -> dict:
    import inspect

    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from tunekit.models import embedded_model_path

    path = str(embedded_model_path())
    train, test = rt_split(args.train, args.test)
    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path)
    labels = sorted({r["label"] for r in train})
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={x: i for i, x in enumerate(labels)},
    )

    def dataset(rows):
        d = Dataset.from_list(
            [{"text": r["text"], "label": labels.index(r["label"])} for r in rows]
        )
        return d.map(
            lambda b: tok(b["text"], truncation=True, max_length=args.max_length),
            batched=True,
            remove_columns=["text"],
        )

    train_ds, test_ds = dataset(train), dataset(test)
    accepted = inspect.signature(TrainingArguments.__init__).parameters
    # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a ratio)
    warmup = {"warmup_ratio": 0.1} if "warmup_ratio" in accepted else {"warmup_steps": 0.1}
    targs = TrainingArguments(
        output_dir="/tmp/tunekit-bench-hf",
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size * 2,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        weight_decay=0.01,
        seed=42,
        bf16=args.precision == "bf16",
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_strategy="no",
        use_cpu=not torch.cuda.is_available(),
        **warmup,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        data_collator=DataCollatorWithPadding(tok),
    )
    loop_start = time.perf_counter()
    trainer.train()
    loop = time.perf_counter() - loop_start
    end_to_end = time.perf_counter() - start
    predicted = trainer.predict(test_ds).predictions.argmax(-1)
    accuracy = float((predicted == np.array(test_ds["label"])).mean())
    return {
        "side": "hf",
        "loop_seconds": round(loop, 2),
        "end_to_end_seconds": round(end_to_end, 2),
        "accuracy": round(accuracy, 4),
        "optim": str(targs.optim),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("tunekit", "hf"), required=True)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument(
        "--compile", default="false", help="tunekit side: compile= (true, false or a backend)"
    )
    parser.add_argument("--save", default=None, help="tunekit side: save the bundle here")
    args = parser.parse_args()
    result = tunekit_side(args) if args.side == "tunekit" else hf_side(args)
    samples = args.train * args.epochs
    result.update(
        precision=args.precision,
        samples=samples,
        samples_per_s=round(samples / result["loop_seconds"], 2),
        peak_rss_mb=peak_rss_mb(),
    )
    emit(result)


if __name__ == "__main__":
    main()
