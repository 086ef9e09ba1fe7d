"""Training the pair tasks on tiny models: cross- and bi-encoder, predictions, bundles, Chinese."""

import numpy as np
import pytest
from tunekit_pair import PairRun

import tunekit
from tunekit.errors import ConfigError, DataError, TrainingError


def losses(run):
    return [float(v) for v in run.history.column("train_loss")]


def test_pair_sim_cross_encoder_learns_and_predicts(en_model, en_pairs, train_opts):
    run = tunekit.finetune("pair-sim", data=en_pairs * 3, model=en_model, **train_opts)
    assert isinstance(run, PairRun)
    assert losses(run)[-1] < losses(run)[0] / 2
    metrics = run.evaluate(en_pairs)
    assert metrics["accuracy"] >= 0.875 and metrics["roc_auc"] >= 0.9 and "f1" in metrics
    one = run.predict(("how old are you", "what is your age"))
    assert one["label"] == "1" and one["probability"] > 0.5 and one["score"] == one["probability"]
    other = run.predict({"text_a": "how old are you", "text_b": "where do you live"})
    assert other["label"] == "0" and other["score"] == pytest.approx(1 - other["probability"])
    # token type ids reach the encoder: the second text is segment 1
    feature = run.task.encode(
        run.task.parse_inputs(("a", "b")), run.tokenizer, max_length=32, with_labels=False
    )[0]
    assert feature["token_type_ids"] == [0, 0, 0, 1, 1]
    with pytest.raises(ConfigError, match="cross-encoder"):
        run.encode(["how old are you"])


def test_nli_alias_multi_class(en_model, en_pairs, train_opts):
    data = [(a, b, "entailment" if y else "neutral") for a, b, y in en_pairs] + [
        (a, "it is not " + a, "contradiction") for a, b, y in en_pairs[::2]
    ]
    run = tunekit.finetune("nli", data=data * 2, model=en_model, **train_opts)
    assert run.task.name == "pair-cls" and run.labels == ("contradiction", "entailment", "neutral")
    metrics = run.evaluate(data)
    assert metrics["accuracy"] > 0.8 and metrics["macro_f1"] > 0.7
    pred = run.predict([("how old are you", "what is your age")])[0]
    assert set(pred["probabilities"]) == set(run.labels) and sum(
        pred["probabilities"].values()
    ) == pytest.approx(1)


def test_sts_scores_are_mapped_back_to_their_range(en_model, en_pairs, train_opts):
    data = [(a, b, 40.0 if y else 10.0) for a, b, y in en_pairs] * 3  # any range
    run = tunekit.finetune("sts", data=data, model=en_model, **train_opts)
    assert run.task.schema.value_range == (10.0, 40.0)
    metrics = run.evaluate(data)
    assert (
        metrics["pearson"] > 0.8
        and metrics["spearman"] > 0.8
        and metrics["mse"] < 0.5 * np.var([d[2] for d in data])
    )  # var = 225
    scores = [p["score"] for p in run.predict([(a, b) for a, b, _ in en_pairs])]
    assert all(10.0 <= s <= 40.0 for s in scores)
    assert np.mean(scores[::2]) > np.mean(scores[1::2]) + 10  # paraphrases score higher


def test_bi_encoder_pair_sim_encode_similarity_and_round_trip(
    en_model, en_pairs, train_opts, tmp_path
):
    run = tunekit.finetune(
        "pair-sim", data=en_pairs * 3, model=en_model, architecture="bi-encoder", **train_opts
    )
    assert losses(run)[-1] < losses(run)[0]
    assert run.evaluate(en_pairs)["accuracy"] >= 0.875
    pred = run.predict(("how old are you", "what is your age"))
    assert pred["label"] == "1" and pred["score"] == pred["similarity"] > run.task.threshold == 0.75
    vectors = run.encode(["how old are you", "what is your age", "where do you live"])
    assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert run.encode("how old are you").shape == (32,)
    same = run.similarity("how old are you", "what is your age")
    assert same == pytest.approx(pred["similarity"], abs=1e-5)
    pair = run.similarity(
        ["how old are you", "how old are you"], ["what is your age", "where do you live"]
    )
    assert pair.shape == (2,) and pair[0] > pair[1]
    with pytest.raises(DataError, match="same length"):
        run.similarity(["a"], ["b", "c"])
    back = tunekit.load(run.save(tmp_path / "bi"), device="cpu")
    assert isinstance(back, PairRun) and back.task.config.architecture == "bi-encoder"
    assert np.array_equal(back.encode(["how old are you"]), run.encode(["how old are you"]))
    assert back.predict([("how old are you", "what is your age")]) == run.predict(
        [("how old are you", "what is your age")]
    )


def test_bi_encoder_cosine_loss_and_sts(en_model, en_pairs, train_opts):
    run = tunekit.finetune(
        "pair-sim",
        data=en_pairs * 3,
        model=en_model,
        architecture="bi-encoder",
        similarity_loss="cosine",
        **train_opts,
    )
    assert run.task.threshold == 0.5 and run.evaluate(en_pairs)["accuracy"] >= 0.875
    sts = tunekit.finetune(
        "sts",
        data=[(a, b, 5.0 if y else 0.0) for a, b, y in en_pairs] * 3,
        model=en_model,
        architecture="bi-encoder",
        **train_opts,
    )
    assert sts.evaluate([(a, b, 5.0 if y else 0.0) for a, b, y in en_pairs])["pearson"] > 0.8
    assert 0.0 <= sts.predict(("how old are you", "what is your age"))["score"] <= 5.0
    with pytest.raises(ConfigError, match="contrastive"):
        tunekit.finetune(
            "sts",
            data=[(a, b, float(y)) for a, b, y in en_pairs],
            model=en_model,
            architecture="bi-encoder",
            similarity_loss="contrastive",
            **train_opts,
        )


def test_bi_encoder_nli_softmax_classifier(en_model, en_pairs, train_opts):
    data = [(a, b, "entailment" if y else "neutral") for a, b, y in en_pairs] * 3
    run = tunekit.finetune(
        "pair-cls", data=data, model=en_model, architecture="bi-encoder", **train_opts
    )
    assert run.evaluate(data)["accuracy"] >= 0.875
    assert "similarity" in run.predict(("how old are you", "what is your age"))


def test_frozen_bi_encoder_needs_a_projection(en_model, en_pairs, train_opts):
    with pytest.raises(TrainingError, match="no trainable parameter"):
        tunekit.finetune(
            "pair-sim",
            data=en_pairs,
            model=en_model,
            architecture="bi-encoder",
            strategy="frozen",
            **train_opts,
        )
    run = tunekit.finetune(
        "pair-sim",
        data=en_pairs * 2,
        model=en_model,
        architecture="bi-encoder",
        strategy="frozen",
        projection=16,
        **train_opts,
    )
    assert losses(run)[-1] < losses(run)[0] and run.encode(["how old are you"]).shape == (1, 16)


def test_chinese_pairs_with_a_tiny_ernie(zh_ernie, zh_pairs, train_opts, tmp_path):
    path = tmp_path / "lcqmc.tsv"
    path.write_text("".join(f"{a}\t{b}\t{y}\n" for a, b, y in zh_pairs * 3), encoding="utf-8")
    run = tunekit.finetune("pair-sim", data=str(path), model=zh_ernie, **train_opts)
    assert run.backbone["model_type"] == "ernie" or type(run.model.encoder).__name__.startswith(
        "Ernie"
    )
    tokens = run.tokenizer.tokenize("今天天气如何")
    assert tokens == list("今天天气如何")  # character level
    assert run.evaluate(str(path))["accuracy"] >= 0.875
    assert run.predict(("今天天气怎么样", "今天天气如何"))["label"] == "1"


def test_cli_predicts_pairs_from_a_bundle(en_model, en_pairs, train_opts, tmp_path, capsys):
    import json

    from tunekit.cli import main

    run = tunekit.finetune("pair-sim", data=en_pairs * 3, model=en_model, **train_opts)
    bundle = run.save(tmp_path / "bundle")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("how old are you\twhat is your age\nhow old are you\twhere do you live\n")
    assert (
        main(["predict", bundle, '["how old are you", "what is your age"]', "--input", str(pairs)])
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["label"] for p in lines] == ["1", "1", "0"]
    assert lines[0] == run.predict(("how old are you", "what is your age"))
