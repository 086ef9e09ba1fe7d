"""``qa`` runs exported to transformers: ``AutoModelForQuestionAnswering`` (the span head's
``qa_outputs`` copied weight for weight) gives the run's start/end logits, and span
decoding of its logits over the windows the exported tokenizer builds gives the answers
``run.predict`` gives (text, start, end), including contexts that need several windows.

transformers 5 has no ``question-answering`` pipeline; on transformers 4 the pipeline
itself is compared too, on single-window contexts with no repeated word (it ranks spans by
per-window probabilities and adds up those of equal answer texts; see docs/qa.md,
"Export to transformers")."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from qa_items import generate_items

import tunekit
from tunekit.errors import ExportError
from tunekit.testing import make_tiny_model

MAX_LENGTH, DOC_STRIDE, MAX_ANSWER = 64, 16, 12
TRAIN = dict(
    epochs=6,
    learning_rate=5e-3,
    batch_size=8,
    max_length=MAX_LENGTH,
    eval_split=0,
    progress=False,
    seed=0,
)


def _questions(items):
    return [{"question": i["question"], "context": i["context"]} for i in items]


@pytest.fixture(scope="module")
def data():
    short = generate_items(4, seed=32, people=2)
    long = generate_items(4, seed=33, people=3, filler=6)  # several windows each
    return generate_items(48, seed=31, people=2), short + long


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data):
    train, test = data
    texts = [i["context"] + " " + i["question"] for i in train + test]
    texts += [c + " " + q for q, c in UNIQUE_WORDS]
    model = make_tiny_model(tmp_path_factory.mktemp("qa") / "tiny", texts)
    run = tunekit.finetune(
        "qa",
        data=train,
        model=model,
        doc_stride=DOC_STRIDE,
        max_answer_length=MAX_ANSWER,
        **TRAIN,
    )
    return run, Path(run.export(tmp_path_factory.mktemp("qa-hf") / "hf"))


def _windows(tokenizer, question, context):
    if isinstance(question, str):
        question = question.lstrip()
    return tokenizer(
        question,
        context,
        truncation="only_second",
        max_length=MAX_LENGTH,
        stride=DOC_STRIDE,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=True,
        return_tensors="pt",
    )


def _best_span(model, tokenizer, question, context):
    """The span of highest start + end logit over all windows (context tokens only, at
    most MAX_ANSWER tokens), from the exported model alone — no tunekit code."""
    enc = _windows(tokenizer, question, context)
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    with torch.no_grad():
        out = model(**inputs)
    best = None
    for w in range(len(enc["input_ids"])):
        context_tokens = np.array([s == 1 for s in enc.sequence_ids(w)])
        start = out.start_logits[w].numpy()
        end = out.end_logits[w].numpy()
        scores = start[:, None] + end[None, :]
        n = len(start)
        allowed = np.triu(np.ones((n, n), bool)) & ~np.triu(np.ones((n, n), bool), MAX_ANSWER)
        allowed &= context_tokens[:, None] & context_tokens[None, :]
        scores = np.where(allowed, scores, -np.inf)
        s, e = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if best is None or scores[s, e] > best[0]:
            offsets = enc["offset_mapping"][w]
            best = (float(scores[s, e]), int(offsets[s][0]), int(offsets[e][1]))
    _, a, b = best
    return context[a:b], a, b


def test_export_is_a_question_answering_model_with_the_runs_answers(exported, data):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    run, path = exported
    _, test = data
    info = json.loads((path / "tunekit_export.json").read_text())
    assert info["pipeline"] == "question-answering" and info["task"] == "qa"
    assert info["pipeline_options"] == {
        "doc_stride": DOC_STRIDE,
        "max_answer_len": MAX_ANSWER,
        "align_to_words": False,
    }
    assert "pipeline_tag: question-answering" in (path / "README.md").read_text()
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["BertForQuestionAnswering"]

    hf = AutoModelForQuestionAnswering.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    questions = _questions(test)
    windows = [
        len(_windows(tokenizer, q["question"], q["context"])["input_ids"]) for q in questions
    ]
    assert max(windows) >= 2 and min(windows) == 1, windows  # long contexts and short ones
    ours = run.predict(questions)
    theirs = [_best_span(hf, tokenizer, q["question"], q["context"]) for q in questions]
    equal = sum((p["answer"], p["start"], p["end"]) == t for p, t in zip(ours, theirs))
    print(f"parity qa: answers equal {equal}/{len(questions)} (windows per question {windows})")
    assert [(p["answer"], p["start"], p["end"]) for p in ours] == theirs
    # the run learned something: answers are not all the same (a text of the context each)
    assert len({p["answer"] for p in ours}) >= 3

    # raw logits on a probe batch of real windows (padded): equal on the real tokens
    enc = _windows(tokenizer, [q["question"] for q in questions], [q["context"] for q in questions])
    batch = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    assert len(batch["input_ids"]) == sum(windows) and (batch["attention_mask"] == 0).any()
    run.model.eval()
    with torch.no_grad():
        mine, exp = run.model(batch), hf(**batch)
    keep = batch["attention_mask"].bool()
    diff = max(
        float((mine[k][keep] - getattr(exp, k)[keep]).abs().max())
        for k in ("start_logits", "end_logits")
    )
    print(f"parity qa: max abs start/end logit diff {diff:.3e}")
    assert diff < 1e-4


# one window each and no word twice: the transformers 4 pipeline adds up the probabilities
# of candidate spans with the same text and normalises them per window, tunekit does not
UNIQUE_WORDS = [
    ("Where was Omar Berg born?", "Omar Berg was born in Lima."),
    ("What does Lena Smith work as?", "Lena Smith works as a chef. Omar Berg was born in Lima."),
    ("Who works as a nurse?", "Ines Lopez works as a nurse. Tariq Costa was born in Helsinki."),
    (
        "In which year was Maria Fischer born?",
        "Maria Fischer was born in 1934. Lena Smith is a chef.",
    ),
]


def test_transformers_4_pipeline_gives_the_same_answers_on_single_window_contexts(exported):
    from transformers.pipelines import SUPPORTED_TASKS

    if "question-answering" not in SUPPORTED_TASKS:
        pytest.skip(
            "this transformers has no question-answering pipeline (removed in transformers 5)"
        )
    from transformers import pipeline

    run, path = exported
    pipe = pipeline("question-answering", model=str(path))
    questions = [{"question": q, "context": c} for q, c in UNIQUE_WORDS]
    for q, p in zip(questions, run.predict(questions)):
        words = q["context"].replace(".", " ").split()
        assert len(words) == len(set(words))
        assert len(_windows(pipe.tokenizer, q["question"], q["context"])["input_ids"]) == 1
        got = pipe(
            question=q["question"],
            context=q["context"],
            max_seq_len=MAX_LENGTH,
            doc_stride=DOC_STRIDE,
            max_answer_len=MAX_ANSWER,
            align_to_words=False,  # tunekit's spans are tokens, not whole words
        )
        assert (got["answer"], got["start"], got["end"]) == (p["answer"], p["start"], p["end"])


def test_lora_run_exports_from_a_bundle_with_the_runs_logits(exported, data, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    run, _ = exported
    train, test = data
    lora = tunekit.finetune(
        "qa",
        data=train,
        model=run.backbone["name"],
        strategy="lora",
        doc_stride=DOC_STRIDE,
        max_answer_length=MAX_ANSWER,
        **{**TRAIN, "epochs": 2},
    )
    direct = Path(lora.export(tmp_path / "direct"))
    loaded = tunekit.load(lora.save(tmp_path / "bundle"), device="cpu")
    path = Path(loaded.export(tmp_path / "hf"))  # adapters merged into the encoder
    ours, theirs = load_file(direct / "model.safetensors"), load_file(path / "model.safetensors")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    hf = AutoModelForQuestionAnswering.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    questions = _questions(test)
    assert [(p["answer"], p["start"], p["end"]) for p in loaded.predict(questions)] == [
        _best_span(hf, tokenizer, q["question"], q["context"]) for q in questions
    ]


def test_heads_without_an_exact_equivalent_are_refused(exported):
    run, _ = exported
    model = copy.deepcopy(run.model)
    model.head.qa_outputs = torch.nn.Linear(model.head.qa_outputs.in_features, 3)
    with pytest.raises(ExportError, match="no linear qa_outputs"):
        run.task.export_hf(model)

    class OtherHead(type(model.head)):
        pass

    model.head = OtherHead(model.head.qa_outputs.in_features)
    with pytest.raises(ExportError, match="not the span head"):
        run.task.export_hf(model)
