"""``qa`` end to end on tiny models: unanswerable questions and the tuned null threshold
(saved in the bundle), Chinese, predict() forms and options, the CLI."""

import json

import pytest
from qa_items import generate_items
from tunekit_qa import QARun

import tunekit
from tunekit.testing import make_tiny_model

TRAIN = dict(
    epochs=6, learning_rate=5e-3, batch_size=8, max_length=64, eval_split=0, progress=False, seed=0
)


def _texts(*sets):
    return [i["context"] + " " + i["question"] for items in sets for i in items]


@pytest.fixture(scope="module")
def v2_data():
    common = dict(people=2, unanswerable=0.4)
    return (
        generate_items(48, seed=21, **common),
        generate_items(40, seed=22, **common),
    )


@pytest.fixture(scope="module")
def v2_run(tmp_path_factory, v2_data):
    train, dev = v2_data
    model = make_tiny_model(tmp_path_factory.mktemp("qa") / "tiny", _texts(train, dev))
    return tunekit.finetune("squad", data=train, model=model, allow_unanswerable=True, **TRAIN)


def test_unanswerable_threshold_is_tuned_on_eval_data_and_saved(v2_run, v2_data, tmp_path):
    _, dev = v2_data
    assert isinstance(v2_run, QARun)
    before = v2_run.evaluate(dev)
    assert {"best_f1", "best_null_threshold", "has_answer_f1", "no_answer_accuracy"} <= set(before)
    tuned = v2_run.tune_threshold(dev)
    # the tuned threshold reaches the best F1 the search reported, never less than the default
    assert tuned["null_threshold"] == pytest.approx(before["best_null_threshold"])
    assert tuned["f1"] == pytest.approx(before["best_f1"]) and tuned["f1"] >= before["f1"]
    inputs = [{"question": r["question"], "context": r["context"]} for r in dev[:10]]
    predictions = v2_run.predict(inputs)
    for p in predictions:
        assert ("null_score_diff" in p) and (p["answer"] == "") == (
            p["null_score_diff"] > tuned["null_threshold"]
        )
    back = tunekit.load(v2_run.save(tmp_path / "bundle"), device="cpu")
    assert isinstance(back, QARun) and back.task.null_threshold == v2_run.task.null_threshold
    assert back.predict(inputs) == predictions
    # the per-call override: a huge threshold always answers, a tiny one never does
    assert all(p["answer"] for p in v2_run.predict(inputs, null_threshold=1e9))
    assert all(p["answer"] == "" for p in v2_run.predict(inputs, null_threshold=-1e9))


def test_tune_threshold_needs_allow_unanswerable(tmp_path):
    train = generate_items(16, seed=3, people=2)
    model = make_tiny_model(tmp_path / "tiny", _texts(train))
    run = tunekit.finetune("qa", data=train, model=model, **{**TRAIN, "epochs": 1})
    with pytest.raises(tunekit.ConfigError, match="allow_unanswerable=True"):
        run.tune_threshold(train)
    # predict forms: a dict gives one answer, a list of dicts / pairs a list
    one = run.predict({"question": train[0]["question"], "context": train[0]["context"]})
    assert set(one) == {"answer", "score", "start", "end"}
    assert train[0]["context"][one["start"] : one["end"]] == one["answer"] and one["answer"]
    pair = run.predict([(train[0]["question"], train[0]["context"])])
    assert pair == [one]
    top = run.predict((train[0]["question"], train[0]["context"]), top_k=3)
    assert len(top) == 3 and top[0] == one


def test_chinese_questions_learn_on_a_tiny_character_model(tmp_path):
    train = generate_items(64, seed=31, people=2, language="zh")
    test = generate_items(24, seed=32, people=2, language="zh")
    model = make_tiny_model(tmp_path / "tiny-zh", _texts(train, test), chinese=True)
    run = tunekit.finetune("qa", data=train, model=model, **{**TRAIN, "epochs": 10})
    losses = run.history.column("train_loss")
    assert losses[-1] < losses[0] / 2
    assert run.tokenizer.tokenize("李娜出生于成都") == list("李娜出生于成都")
    metrics = run.evaluate(test)
    # CMRC metrics (detected): the F1 counts characters, so partial names score
    assert metrics["f1"] >= metrics["exact"] and metrics["f1"] > 0.3, metrics


def test_cli_finetunes_and_predicts_json_questions(tmp_path, capsys):
    from tunekit.cli import main

    items = generate_items(24, seed=41, people=2)
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(i) for i in items), encoding="utf-8")
    model = make_tiny_model(tmp_path / "tiny", _texts(items))
    out = tmp_path / "bundle"
    code = main(
        [
            "finetune",
            "--task",
            "qa",
            "--data",
            str(data),
            "--model",
            model,
            "--output",
            str(out),
            "--epochs",
            "2",
            "--max-length",
            "64",
            "--eval-split",
            "0",
            "--doc-stride",
            "16",
        ]
    )
    assert code == 0
    capsys.readouterr()
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "\n".join(
            json.dumps({"question": i["question"], "context": i["context"]}) for i in items[:3]
        )
    )
    assert main(["predict", str(out), "--input", str(questions)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    run = tunekit.load(out)
    assert lines == run.predict(
        [{"question": i["question"], "context": i["context"]} for i in items[:3]]
    )
