"""Training token-tagging on tiny models: NER (softmax / CRF), schemes, POS, windows,
subword labels, Chinese BMES, predictions and bundles."""

import numpy as np
import pytest
from tunekit_tagging import TaggingTask, entity_metrics, is_valid, tags_to_spans
from tunekit_tagging.task import TaggingConfig

import tunekit


def ner_records(sentences):
    return [{"tokens": [t for t, _, _ in s], "tags": [n for _, _, n in s]} for s in sentences]


def losses(run):
    return [float(v) for v in run.history.column("train_loss")]


def majority_f1(records):
    # the majority baseline tags every word "O": no entity found
    return entity_metrics([tags_to_spans(r["tags"]) for r in records], [[] for _ in records])["f1"]


def test_ner_from_conll_learns_and_predicts_entities(
    english, en_model, en_conll, train_opts, tmp_path
):
    run = tunekit.finetune("ner", data=en_conll, model=en_model, **train_opts)
    assert (
        run.task.name == "token-tagging"
        and run.task.scheme == "iob2"
        and run.task.default_metric == "f1"
    )
    assert losses(run)[-1] < losses(run)[0] / 5
    held_out = ner_records(english(24, seed=7))
    metrics = run.evaluate(held_out)
    assert majority_f1(held_out) == 0.0
    assert metrics["f1"] > 0.9 and metrics["accuracy"] > 0.95
    assert {
        "PER_f1",
        "LOC_f1",
        "ORG_f1",
        "PER_precision",
        "ORG_recall",
        "precision",
        "recall",
    } <= set(metrics)
    text = "Omar Khan works for Globex Inc"
    entities = run.predict(text)
    assert [(e["label"], e["text"]) for e in entities] == [
        ("PER", "Omar Khan"),
        ("ORG", "Globex Inc"),
    ]
    for e in entities:
        assert text[e["start"] : e["end"]] == e["text"] and 0.3 < e["score"] <= 1.0
    assert run.predict([["we", "met", "Anna", "in", "Rome", "today"]]) == [
        ["O", "O", "B-PER", "O", "B-LOC", "O"]
    ]
    assert run.predict({"tokens": ["Anna", "lives", "in", "Rome"]}) == ["B-PER", "O", "O", "B-LOC"]
    back = tunekit.load(run.save(tmp_path / "ner"), device="cpu")
    assert back.predict(text) == entities and back.task.scheme == "iob2"


def test_crf_head_bioes_scheme_learns_and_decodes_valid_sequences(
    english, en_model, en_sentences, train_opts, tmp_path
):
    run = tunekit.finetune(
        "ner",
        data=ner_records(en_sentences),
        model=en_model,
        head="crf",
        scheme="bioes",
        **train_opts,
    )
    assert (
        run.task.scheme == "bioes"
        and "S-LOC" in run.labels
        and type(run.model.head).__name__ == "CRFHead"
    )
    assert losses(run)[-1] < losses(run)[0] / 5
    held_out = ner_records(english(24, seed=7))  # IOB2 gold, BIOES model: compared as entities
    metrics = run.evaluate(held_out)
    assert metrics["f1"] > 0.9
    tags = run.predict([r["tokens"] for r in held_out])
    assert all(is_valid(t, "bioes") for t in tags) and tags[0][-1] in ("S-LOC", "O", "E-LOC")
    back = tunekit.load(run.save(tmp_path / "crf"), device="cpu")
    assert back.predict([r["tokens"] for r in held_out]) == tags


def test_iob1_data_trains_in_its_own_scheme(en_model, en_sentences, train_opts):
    from tunekit_tagging import convert

    records = [
        {"tokens": r["tokens"], "tags": convert(r["tags"], "iob1")}
        for r in ner_records(en_sentences)
    ]
    assert any(t.startswith("I-") for t in records[0]["tags"])
    run = tunekit.finetune("ner", data=records, model=en_model, **{**train_opts, "epochs": 6})
    assert run.task.scheme == "iob1" and run.evaluate(records)["f1"] > 0.9
    assert run.predict([["Anna", "lives", "in", "Rome"]])[0] == ["I-PER", "O", "O", "I-LOC"]


def test_pos_from_a_chosen_conll_column_reports_token_accuracy(
    english, en_model, en_conll, train_opts
):
    run = tunekit.finetune("pos", data=en_conll, model=en_model, tag_column=1, **train_opts)
    assert run.task.kind == "tags" and run.task.default_metric == "accuracy" and "NNP" in run.labels
    held_out = [
        {"tokens": [t for t, _, _ in s], "tags": [p for _, p, _ in s]} for s in english(16, seed=3)
    ]
    tags = [t for r in held_out for t in r["tags"]]
    majority = max(tags.count(t) for t in set(tags)) / len(tags)
    metrics = run.evaluate(held_out)
    assert metrics["accuracy"] > max(0.9, majority + 0.3) and "f1" not in metrics
    words = run.predict("Anna works for Acme Corp")
    assert [w["label"] for w in words] == ["NNP", "VBZ", "IN", "NNP", "NNP"] and words[3][
        "text"
    ] == "Acme"


def test_long_sentences_are_windowed_and_merged_to_one_prediction_per_word(
    en_model, en_sentences, train_opts
):
    # sentences of 20-40 words, max_length 16: several overlapping windows per sentence
    long = []
    records = ner_records(en_sentences)
    for i in range(0, len(records) - 5, 3):
        group = records[i : i + 6]
        long.append(
            {
                "tokens": sum((r["tokens"] for r in group), []),
                "tags": sum((r["tags"] for r in group), []),
            }
        )
    opts = {**train_opts, "max_length": 16, "epochs": 10}
    run = tunekit.finetune("ner", data=long, model=en_model, stride=4, **opts)
    task, tok = run.task, run.tokenizer
    features = task.encode(task.read(long), tok, max_length=16, with_labels=True)
    assert len(features) > 3 * len(long) and all(len(f["input_ids"]) <= 16 for f in features)
    for i, record in enumerate(long):  # every word's first subword is scored in some window
        own = [f for f in features if f["example_index"] == i]
        assert {w for f in own for _, w in f["_words"]} == set(range(len(record["tokens"])))
        assert (
            own[0]["sentence_start"] == 1
            and own[-1]["sentence_end"] == 1
            and own[1]["sentence_start"] == 0
        )
    predictions = run.predict([r["tokens"] for r in long])
    assert [len(p) for p in predictions] == [len(r["tokens"]) for r in long]
    assert run.evaluate(long)["f1"] > 0.85


def test_window_merge_takes_each_word_from_its_most_central_window():
    task = TaggingTask(TaggingConfig())
    task.setup(task.read([(["a", "b"], ["B-X", "O"])]))  # labels: O, B-X, I-X
    # one record of 5 words, two windows of 6 positions ([CLS] w w w w [SEP]); words 2-3 in both
    features = [
        {"input_ids": [0] * 6, "example_index": 0, "_words": [(1, 0), (2, 1), (3, 2), (4, 3)]},
        {"input_ids": [0] * 6, "example_index": 0, "_words": [(1, 2), (2, 3), (3, 4)]},
    ]
    first = np.full((6, 3), -5.0)
    first[:, 1] = 5.0  # window 1 says B-X everywhere
    second = np.full((6, 3), -5.0)
    second[:, 0] = 5.0  # window 2 says O everywhere
    ((ids, scores),) = task.word_predictions(
        [{"logits": first}, {"logits": second}], features, [{"tokens": list("abcde")}]
    )
    # word 2 sits at position 3 of window 1 (distance 2 from an edge) and 1 of window 2 (distance 1): window 1;
    # word 3 sits at 4 (distance 1) and 2 (distance 2): window 2
    assert ids == [1, 1, 1, 0, 0] and all(s > 0.99 for s in scores)


def test_subword_labels_first_only_or_all(minilm_tokenizer):
    records = [{"tokens": ["Schwarzenegger", "visited", "Tokyo"], "tags": ["B-PER", "O", "B-LOC"]}]
    for all_subwords in (False, True):
        task = TaggingTask(TaggingConfig(label_all_subwords=all_subwords))
        task.setup(task.read(records))
        (feat,) = task.encode(task.read(records), minilm_tokenizer, max_length=32, with_labels=True)
        pieces = minilm_tokenizer.convert_ids_to_tokens(feat["input_ids"])
        assert pieces[1] == "schwarz" and pieces[2].startswith("##")
        b_per = task.schema.id_of("B-PER")
        n_pieces = sum(p.startswith("##") for p in pieces[:6]) + 1
        expected = [b_per] + ([b_per] * (n_pieces - 1) if all_subwords else [-100] * (n_pieces - 1))
        assert feat["labels"][1 : 1 + n_pieces] == expected
        assert feat["word_starts"][1 : 1 + n_pieces] == [1] + [0] * (n_pieces - 1)
        assert feat["labels"][0] == feat["labels"][-1] == -100


def test_windows_never_start_a_word_on_a_continuation_subword(minilm_tokenizer):
    tokens = ["Schwarzenegger", "met", "Rumpelstiltskin", "in", "Ouagadougou"] * 6
    task = TaggingTask(TaggingConfig(stride=3))
    task.setup(task.read([(tokens, ["B-PER", "O", "B-PER", "O", "B-LOC"] * 6)]))
    features = task.encode(
        task.read([(tokens, ["B-PER", "O", "B-PER", "O", "B-LOC"] * 6)]),
        minilm_tokenizer,
        max_length=12,
        with_labels=True,
    )
    assert len(features) > 4
    for feat in features:
        pieces = minilm_tokenizer.convert_ids_to_tokens(feat["input_ids"])
        for k, _ in feat["_words"]:
            assert not pieces[k].startswith("##")
    assert {w for f in features for _, w in f["_words"]} == set(range(len(tokens)))


def test_chinese_bmes_character_level_on_tiny_ernie(
    chinese, conll_writer, zh_model, zh_sentences, train_opts, tmp_path
):
    path = tmp_path / "train.bmes"
    conll_writer(path, zh_sentences, docstart=False)
    run = tunekit.finetune("ner", data=str(path), model=zh_model, **{**train_opts, "epochs": 10})
    assert run.task.scheme == "bmes" and "M-PER" in run.labels
    held_out = [
        {"tokens": [c for c, _ in s], "tags": [t for _, t in s]} for s in chinese(16, seed=5)
    ]
    assert run.evaluate(held_out)["f1"] > 0.85
    text = "王小明住在南京市"
    entities = run.predict(text)
    assert [(e["label"], e["text"], e["start"], e["end"]) for e in entities] == [
        ("PER", "王小明", 0, 3),
        ("LOC", "南京市", 5, 8),
    ]


def test_scheme_option_on_plain_tags_is_a_config_error(en_model, en_conll, train_opts):
    from tunekit.errors import ConfigError

    with pytest.raises(ConfigError, match="scheme='bioes' applies to entity tags"):
        tunekit.finetune(
            "pos", data=en_conll, model=en_model, tag_column=1, scheme="bioes", **train_opts
        )
    with pytest.raises(ConfigError, match="scheme="):
        TaggingConfig(scheme="bilu")
    with pytest.raises(
        ConfigError,
        match="is a sequence-level head, but task .token-tagging. takes token-level heads",
    ):
        tunekit.finetune("ner", data=en_conll, model=en_model, head="mlp", **train_opts)
