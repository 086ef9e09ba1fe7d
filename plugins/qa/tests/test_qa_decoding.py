"""Windows and decoding: labels point at the answer's tokens (or CLS), and decoding gold
logits gives back exactly the gold answers — across windows, with unanswerable questions
and Chinese contexts."""

import itertools

import numpy as np
import pytest
from tunekit_qa import decode_question, window_spans
from tunekit_qa.task import QAConfig, QATask

import tunekit
from tunekit.config import build_config


def make_task(**options):
    return QATask(build_config(QAConfig, options, owner="qa"))


def gold_outputs(features, high=10.0, low=-10.0):
    """Logits that put all mass on each window's label (start, end)."""
    outputs = []
    for f in features:
        n = len(f["input_ids"])
        start, end = np.full(n, low), np.full(n, low)
        start[f["labels"][0]] = high
        end[f["labels"][1]] = high
        outputs.append({"start_logits": start, "end_logits": end})
    return outputs


def test_long_context_becomes_windows_and_only_a_later_one_holds_the_answer(
    squad, minilm_tokenizer
):
    task = make_task(allow_unanswerable=True, doc_stride=8)
    records = task.read(squad)
    features = task.encode(records, minilm_tokenizer, max_length=48, with_labels=True)
    late = [f for f in features if f["example_index"] == 0]
    assert len(late) >= 3
    for f in late:
        assert len(f["input_ids"]) <= 48
        # the question is in every window, the context is the second sequence
        assert minilm_tokenizer.decode(f["input_ids"]).startswith("[CLS] who founded the museum?")
    holding = [i for i, f in enumerate(late) if f["labels"] != [f["_cls"], f["_cls"]]]
    assert holding and holding[0] > 0, "the answer must lie only in a later window"
    for i in holding:
        f = late[i]
        a, b = f["_offsets"][f["labels"][0]][0], f["_offsets"][f["labels"][1]][1]
        assert records[0]["context"][a:b] == "Clara Weiss"
    # consecutive windows overlap by the stride
    first_ctx = [o for o in late[0]["_offsets"] if o is not None]
    second_ctx = [o for o in late[1]["_offsets"] if o is not None]
    assert first_ctx[-8:] == second_ctx[:8]
    # the unanswerable question points at CLS in every window
    assert all(f["labels"] == [0, 0] for f in features if f["example_index"] == 2)


@pytest.mark.parametrize("allow_unanswerable", [True, False])
def test_decoding_gold_logits_is_exact(squad, minilm_tokenizer, allow_unanswerable):
    if not allow_unanswerable:
        squad["data"][0]["paragraphs"][0]["qas"].pop(2)
    task = make_task(allow_unanswerable=allow_unanswerable, doc_stride=8)
    records = task.read(squad)
    features = task.encode(records, minilm_tokenizer, max_length=48, with_labels=True)
    assert len(features) > len(records)
    predictions = task.decode(gold_outputs(features), features, records)
    for pred, record in zip(predictions, records):
        if record["answers"]:
            first = record["answers"][0]
            assert pred["answer"] == first["text"]
            assert (pred["start"], pred["end"]) == (
                first["start"],
                first["start"] + len(first["text"]),
            )
            assert record["context"][pred["start"] : pred["end"]] == pred["answer"]
        else:
            assert pred["answer"] == "" and pred["null_score_diff"] > 0
    metrics = task.metrics(predictions, records)
    assert metrics["exact"] == 1.0 and metrics["f1"] == 1.0


def test_chinese_gold_logits_and_character_offsets(squad, zh_tokenizer):
    task = make_task()
    records = task.read(squad["data"][1:])
    features = task.encode(records, zh_tokenizer, max_length=24, with_labels=True)
    predictions = task.decode(gold_outputs(features), features, records)
    assert [p["answer"] for p in predictions] == ["成都", "老师"]
    assert predictions[0]["start"] == records[0]["context"].index("成都")
    assert task.metrics(predictions, records) == {"exact": 1.0, "f1": 1.0}


def brute_force(start, end, is_context, max_answer_length):
    best = None
    for s, e in itertools.product(range(len(start)), repeat=2):
        if is_context[s] and is_context[e] and s <= e < s + max_answer_length:
            score = start[s] + end[e]
            if best is None or score > best[0]:
                best = (score, s, e)
    return best


def test_window_spans_is_the_exact_argmax_and_ranks_the_n_best():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(5, 40))
        start, end = rng.normal(size=n), rng.normal(size=n)
        is_context = np.zeros(n, dtype=bool)
        a = int(rng.integers(1, n - 2))
        is_context[a : n - 1] = True
        length = int(rng.integers(1, 8))
        spans = window_spans(start, end, is_context, max_answer_length=length, n_best=5)
        score, s, e = brute_force(start, end, is_context, length)
        assert spans[0] == (pytest.approx(score), s, e)
        assert [x[0] for x in spans] == sorted((x[0] for x in spans), reverse=True)
        assert all(is_context[s] and is_context[e] and 0 <= e - s < length for _, s, e in spans)


def test_max_answer_length_and_null_threshold_decide():
    offsets = [None, None, (0, 3), (4, 9), (10, 14), None]
    window = {
        "start_logits": np.array([1.0, 0, 5, 0, 0, 0]),
        "end_logits": np.array([1.0, 0, 0, 0, 4, 0]),
        "offsets": offsets,
        "cls_index": 0,
    }
    context = "Ada was born"
    long = decode_question(
        [window],
        context,
        max_answer_length=3,
        n_best_size=20,
        allow_unanswerable=False,
        null_threshold=0.0,
    )
    assert long["answer"] == "Ada was born"
    short = decode_question(
        [window],
        context,
        max_answer_length=1,
        n_best_size=20,
        allow_unanswerable=False,
        null_threshold=0.0,
    )
    assert short["answer"] in ("Ada", "born")
    # null score 2 vs best span 9: diff -7 → answered unless the threshold is below -7
    answered = decode_question(
        [window],
        context,
        max_answer_length=3,
        n_best_size=20,
        allow_unanswerable=True,
        null_threshold=0.0,
    )
    assert answered["answer"] == "Ada was born" and answered["null_score_diff"] == pytest.approx(-7)
    refused = decode_question(
        [window],
        context,
        max_answer_length=3,
        n_best_size=20,
        allow_unanswerable=True,
        null_threshold=-8.0,
    )
    assert refused["answer"] == "" and (refused["start"], refused["end"]) == (0, 0)
    assert refused["best_span"]["answer"] == "Ada was born"
    top = decode_question(
        [window],
        context,
        max_answer_length=3,
        n_best_size=20,
        allow_unanswerable=False,
        null_threshold=0.0,
        top_k=3,
    )
    assert [c["answer"] for c in top][0] == "Ada was born" and len(top) == 3
    assert top[0]["score"] > top[1]["score"] >= top[2]["score"]


def test_null_score_is_the_minimum_over_windows():
    # window 1 is sure there is no answer, window 2 holds a weak span: the null score is
    # the minimum (window 2's CLS), so the span wins, as in BERT's run_squad
    w1 = {
        "start_logits": np.array([9.0, 0, 0]),
        "end_logits": np.array([9.0, 0, 0]),
        "offsets": [None, (0, 3), None],
        "cls_index": 0,
    }
    w2 = {
        "start_logits": np.array([-1.0, 0, 1]),
        "end_logits": np.array([-1.0, 0, 1]),
        "offsets": [None, None, (4, 7)],
        "cls_index": 0,
    }
    pred = decode_question(
        [w1, w2],
        "aaa bbb",
        max_answer_length=5,
        n_best_size=5,
        allow_unanswerable=True,
        null_threshold=0.0,
    )
    assert pred["answer"] == "bbb" and pred["null_score_diff"] == pytest.approx(-4)


def test_unknown_predict_option_is_a_config_error(squad, minilm_tokenizer):
    task = make_task(allow_unanswerable=True)
    records = task.read(squad)
    features = task.encode(records, minilm_tokenizer, max_length=64, with_labels=True)
    with pytest.raises(tunekit.ConfigError, match="topk"):
        task.decode(gold_outputs(features), features, records, topk=2)
