"""Reading SQuAD nested JSON, JSON Lines, dicts and Datasets; bad input is a DataError
that names the example and says how to fix it."""

import json

import pytest
from qa_items import generate_items
from tunekit_qa.task import QAConfig, QATask

import tunekit
from tunekit.config import build_config


def make_task(**options):
    return QATask(build_config(QAConfig, options, owner="qa"))


def test_squad_v2_file_flat_jsonl_and_dicts_give_the_same_records(squad, tmp_path):
    task = make_task(allow_unanswerable=True)
    path = tmp_path / "train-v2.0.json"
    path.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    from_file = task.read(str(path))
    assert [r["id"] for r in from_file] == [
        "late-window",
        "first-window",
        "impossible",
        "zh-1",
        "zh-2",
    ]
    assert from_file[2]["answers"] == []  # is_impossible: plausible answers are not answers
    assert len(from_file[1]["answers"]) == 3
    flat = [
        {
            "id": r["id"],
            "question": r["question"],
            "context": r["context"],
            "answers": {
                "text": [a["text"] for a in r["answers"]],
                "answer_start": [a["start"] for a in r["answers"]],
            },
        }
        for r in from_file
    ]
    lines = tmp_path / "train.jsonl"
    lines.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in flat), encoding="utf-8")
    strip = lambda rs: [{k: v for k, v in r.items() if k != "where"} for r in rs]  # noqa: E731
    assert strip(task.read(str(lines))) == strip(from_file)
    assert strip(task.read(flat)) == strip(from_file)
    assert strip(task.read(squad)) == strip(from_file)
    # the SQuAD list-of-answers layout works too
    listed = [
        {**r, "answers": [{"text": a["text"], "answer_start": a["start"]} for a in r["answers"]]}
        for r in strip(from_file)
    ]
    assert strip(task.read(listed)) == strip(from_file)
    assert "line 3" in task.read(str(lines))[2]["where"]


def test_datasets_dataset_is_read(squad):
    import datasets

    items = generate_items(4, seed=3)
    task = make_task()
    records = task.read(datasets.Dataset.from_list(items))
    assert [r["answers"][0]["text"] for r in records] == [i["answers"]["text"][0] for i in items]


def test_wrong_answer_start_names_the_question_and_the_fix(squad, tmp_path):
    qa = squad["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] += 3
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(squad), encoding="utf-8")
    task = make_task(allow_unanswerable=True)
    with pytest.raises(tunekit.DataError) as err:
        task.read(str(path), name="eval_data")
    message = str(err.value)
    assert "eval_data file" in message and "'late-window'" in message
    assert "fix_answer_start=True" in message and "'Clara Weiss'" in message
    fixed = make_task(allow_unanswerable=True, fix_answer_start=True).read(str(path))
    start = fixed[0]["answers"][0]["start"]
    assert fixed[0]["context"][start : start + len("Clara Weiss")] == "Clara Weiss"


def test_answer_that_is_not_in_the_context_cannot_be_fixed(squad):
    squad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["text"] = "Bruno Weiss"
    with pytest.raises(tunekit.DataError, match="does not occur in the context"):
        make_task(allow_unanswerable=True, fix_answer_start=True).read(squad)


def test_empty_context_and_missing_question_are_data_errors():
    task = make_task()
    with pytest.raises(tunekit.DataError, match=r"data record 1 has an empty context"):
        task.read(
            [
                {
                    "question": "q?",
                    "context": "a b",
                    "answers": {"text": ["a"], "answer_start": [0]},
                },
                {
                    "question": "q?",
                    "context": "  ",
                    "answers": {"text": ["a"], "answer_start": [0]},
                },
            ]
        )
    with pytest.raises(tunekit.DataError, match="record 0 has no question"):
        task.read([{"context": "a b", "answers": {"text": ["a"], "answer_start": [0]}}])


def test_unanswerable_question_needs_allow_unanswerable(squad):
    with pytest.raises(tunekit.DataError, match=r"'impossible'.*allow_unanswerable=True"):
        make_task().read(squad)


def test_question_longer_than_max_length_names_the_question(minilm_tokenizer):
    task = make_task()
    long_question = "why " * 40 + "?"
    records = task.read(
        [
            {
                "id": "q7",
                "question": long_question,
                "context": "because",
                "answers": {"text": ["because"], "answer_start": [0]},
            }
        ]
    )
    with pytest.raises(
        tunekit.DataError, match=r"record 0.*41 tokens long.*max_length=32.*Raise max_length"
    ):
        task.encode(records, minilm_tokenizer, max_length=32, with_labels=True)


def test_predict_inputs_are_dicts_or_pairs():
    task = make_task()
    records = task.parse_inputs([{"question": "q?", "context": "c"}, ("q2?", "c2")])
    assert [(r["question"], r["context"]) for r in records] == [("q?", "c"), ("q2?", "c2")]
    with pytest.raises(tunekit.DataError, match="predict input 0 has an empty context"):
        task.parse_inputs({"question": "q?", "context": ""})
    with pytest.raises(tunekit.DataError, match="predict input 0 is 'just text'"):
        task.parse_inputs(["just text"])


def test_generated_items_point_at_their_answers():
    for language in ("en", "zh"):
        items = generate_items(50, seed=5, language=language, unanswerable=0.2, filler=2)
        assert any(not i["answers"]["text"] for i in items)
        for item in items:
            for text, start in zip(item["answers"]["text"], item["answers"]["answer_start"]):
                assert item["context"][start : start + len(text)] == text
