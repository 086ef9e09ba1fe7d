"""Full fine-tune, tunekit vs the transformers ``Trainer``, one side per process.

Three tasks, each with the network the reference tool builds, on both sides:

- ``classify``: Rotten-Tomatoes snippets; ``BertForSequenceClassification`` (CLS →
  pooler dense + tanh → classifier; tunekit ``head="mlp", hidden=[384],
  activation="tanh", pooling="cls"``); accuracy.
- ``ner``: WNUT-16 style tweets; ``BertForTokenClassification`` as ``run_ner.py`` trains
  it (the first subword of a word carries its tag, the rest -100); tunekit ``ner`` with
  the ``softmax`` head (dropout → linear); entity micro F1 (seqeval).
- ``sts``: Lee (2005) document pairs, a cross-encoder regressing the 0-1 score
  (``BertForSequenceClassification``, one output, MSE; tunekit ``sts`` with the pooler
  head); Pearson.

Same model (embedded MiniLM), data, epochs, batch size, learning rate, warmup, weight
decay, max length, seed and precision on both sides. The Trainer runs at its default
(random batches) or, with ``--hf-sampling group_by_length``, with the length grouping a
careful user turns on (``train_sampling_strategy`` in transformers 5, ``group_by_length``
in 4); ``--compile true`` compiles either side.

The clock of both sides covers the same work: *fit seconds* is the wall time of the fit
call end to end — tunekit's ``finetune()`` (which loads the model, tokenizes and trains)
against the Trainer's tokenizer and model loading, dataset tokenization, ``Trainer``
construction and ``train()``; imports are outside both. *loop seconds* is each side's own
training loop. The batch shapes every encoder forward saw are recorded (a global forward
hook, not under compile) for the executed-FLOP count, padding included.

    python benchmarks/bench_train.py --task classify --side tunekit [--precision bf16] [--save DIR]
    python benchmarks/bench_train.py --task ner --side hf --hf-sampling group_by_length --seed 43

``benchmarks/run_all.py`` runs the sides alternately and compares them.
"""

from __future__ import annotations

import argparse
import time

from hf_anchor import text_classification_set, token_classification_set
from machine import BatchShapes, emit, peak_rss_mb, task_data

#: tunekit's head equal to BertForSequenceClassification's (pooler dense + tanh, classifier)
POOLER_HEAD = dict(head="mlp", hidden=[384], activation="tanh", pooling="cls", dropout=0.1)

#: the metric each task's comparison reports (higher is better for all three)
METRIC = {"classify": "accuracy", "ner": "f1", "sts": "pearson"}


def _flag(value: str):
    return {"true": True, "false": False}.get(str(value).lower(), value)


def tunekit_side(args, train, test) -> dict:
    # the HF side imports its model classes before its clock starts; so does this side
    from transformers import AutoModel, AutoTokenizer, BertModel  # noqa: F401

    import tunekit
    from tunekit.models import embedded_model_path

    task_options = {
        "classify": dict(task="classify", **POOLER_HEAD),
        "ner": dict(task="ner", head="softmax", dropout=0.1),
        "sts": dict(
            task="sts", architecture="cross-encoder", score_range=(0.0, 1.0), **POOLER_HEAD
        ),
    }[args.task]
    tunekit.plugins.get_state()
    if args.all_positions:  # the technique off: the last layer for every position
        from tunekit.taskmodel import TaskModel

        TaskModel.skip_unread_positions = False
    compiled = _flag(args.compile)
    recorder = BatchShapes()
    start = time.perf_counter()
    if compiled:
        run = _finetune(tunekit, embedded_model_path(), args, train, task_options)
    else:
        with recorder:
            run = _finetune(tunekit, embedded_model_path(), args, train, task_options)
    fit = time.perf_counter() - start
    loop = run.history.info["train_seconds"]
    metric = run.evaluate(test)[METRIC[args.task]]
    if args.save:
        run.save(args.save)
    return {
        "fit_seconds": round(fit, 2),
        "loop_seconds": round(loop, 2),
        "metric": round(float(metric), 4),
        "compiled": run.history.info.get("compiled"),
        "batch_shapes": None if compiled else recorder.shapes,
    }


def _finetune(tunekit, path, args, train, task_options):
    return tunekit.finetune(
        model=str(path),
        data=train,
        eval_split=0,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        learning_rate=args.learning_rate,
        warmup_ratio=0.1,
        weight_decay=0.01,
        seed=args.seed,
        precision=args.precision,
        compile=_flag(args.compile),
        group_by_length=not args.no_grouping,
        progress=False,
        **task_options,
    )


def hf_side(args, train, test) -> dict:
    import inspect

    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from tunekit.models import embedded_model_path

    path = str(embedded_model_path())
    compiled = bool(_flag(args.compile))
    recorder = BatchShapes()
    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path)
    if args.task == "classify":
        labels = sorted({r["label"] for r in train})
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={x: i for i, x in enumerate(labels)},
        )  # fmt: skip

        def dataset(rows):
            return text_classification_set(tok, rows, labels, args.max_length)

        collator = DataCollatorWithPadding(tok)
    elif args.task == "ner":
        labels = sorted({t for r in train for t in r["tags"]})
        model = AutoModelForTokenClassification.from_pretrained(
            path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={x: i for i, x in enumerate(labels)},
        )  # fmt: skip

        def dataset(rows):  # run_ner.py-style alignment
            return token_classification_set(tok, rows, labels, args.max_length)

        collator = DataCollatorForTokenClassification(tok)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, problem_type="regression"
        )

        def dataset(rows):
            d = Dataset.from_list(
                [{"a": r["text_a"], "b": r["text_b"], "label": float(r["score"])} for r in rows]
            )
            return d.map(
                lambda b: tok(b["a"], b["b"], truncation=True, max_length=args.max_length),
                batched=True, remove_columns=["a", "b"],
            )  # fmt: skip

        collator = DataCollatorWithPadding(tok)

    train_ds = dataset(train)
    accepted = inspect.signature(TrainingArguments.__init__).parameters
    # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a ratio)
    extra = {"warmup_ratio": 0.1} if "warmup_ratio" in accepted else {"warmup_steps": 0.1}
    if args.hf_sampling != "random":
        # transformers 5: train_sampling_strategy="group_by_length"; 4: group_by_length=True
        if "train_sampling_strategy" in accepted:
            extra["train_sampling_strategy"] = args.hf_sampling
        else:
            extra["group_by_length"] = True
    targs = TrainingArguments(
        output_dir="/tmp/tunekit-bench-hf",
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size * 2,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        weight_decay=0.01,
        seed=args.seed,
        bf16=args.precision == "bf16",
        torch_compile=compiled,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_strategy="no",
        use_cpu=not torch.cuda.is_available(),
        **extra,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, data_collator=collator)
    loop_start = time.perf_counter()
    if compiled:
        trainer.train()
    else:
        with recorder:
            trainer.train()
    loop = time.perf_counter() - loop_start
    fit = time.perf_counter() - start

    test_ds = dataset(test)
    # transformers 5 length-groups the *evaluation* sampler too under
    # train_sampling_strategy="group_by_length" (Trainer._get_eval_sampler), so predictions
    # come back permuted against the test rows: predict in input order
    trainer.args.train_sampling_strategy = "random"
    out = trainer.predict(test_ds)
    if args.task == "classify":
        metric = float((out.predictions.argmax(-1) == np.array(test_ds["label"])).mean())
    elif args.task == "ner":
        from seqeval.metrics import f1_score

        predicted = out.predictions.argmax(-1)
        enc = tok([r["tokens"] for r in test], truncation=True, max_length=args.max_length,
                  is_split_into_words=True)  # fmt: skip
        truth, guess = [], []
        for i, row in enumerate(test):
            words, previous = {}, None
            for k, word in enumerate(enc.word_ids(batch_index=i)):
                if word is not None and word != previous:  # a word's first subword
                    words[word] = labels[int(predicted[i][k])]
                previous = word
            truth.append(list(row["tags"]))
            guess.append([words.get(w, "O") for w in range(len(row["tags"]))])
        metric = f1_score(truth, guess)
    else:
        scores = np.clip(out.predictions.reshape(-1), 0.0, 1.0)  # tunekit clips to the range
        metric = float(np.corrcoef(scores, np.array(test_ds["label"]))[0, 1])
    return {
        "fit_seconds": round(fit, 2),
        "loop_seconds": round(loop, 2),
        "metric": round(float(metric), 4),
        "optim": str(targs.optim),
        "sampling": args.hf_sampling,
        "compiled": compiled,
        "batch_shapes": None if compiled else recorder.shapes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=tuple(METRIC), default="classify")
    parser.add_argument("--side", choices=("tunekit", "hf"), required=True)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument(
        "--hf-sampling",
        choices=("random", "group_by_length"),
        default="random",
        help="hf side: the Trainer's default random batches or its length grouping",
    )
    parser.add_argument(
        "--compile",
        default="false",
        help="true, false or a backend (tunekit: compile=; hf: torch_compile)",
    )
    parser.add_argument(
        "--no-grouping",
        action="store_true",
        help="tunekit side: random batches (group_by_length=False), to measure what grouping pays",
    )
    parser.add_argument(
        "--all-positions",
        action="store_true",
        help="tunekit side: the last layer for every position, not only the CLS row the head "
        "reads (TaskModel.skip_unread_positions=False), to measure what skipping pays",
    )
    parser.add_argument("--save", default=None, help="tunekit side: save the bundle here")
    args = parser.parse_args()
    train, test = task_data(args.task, args.train, args.test)
    result = (
        tunekit_side(args, train, test) if args.side == "tunekit" else hf_side(args, train, test)
    )
    samples = len(train) * args.epochs
    result.update(
        task=args.task,
        side=args.side,
        metric_name=METRIC[args.task],
        seed=args.seed,
        precision=args.precision,
        samples=samples,
        samples_per_s=round(samples / result["fit_seconds"], 2),
        peak_rss_mb=peak_rss_mb(),
    )
    emit(result)


if __name__ == "__main__":
    main()
