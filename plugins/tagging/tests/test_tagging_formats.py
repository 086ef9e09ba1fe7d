"""Reading tagging data: CoNLL columns, JSON Lines, spans, Chinese characters; bad input."""

import json

import pytest
from tunekit_tagging import TaggingTask
from tunekit_tagging.task import TaggingConfig

import tunekit
from tunekit.errors import DataError


def task(**options):
    return TaggingTask(TaggingConfig(**options))


def test_conll_columns_docstart_and_blank_lines(tmp_path):
    path = tmp_path / "d.conll"
    path.write_text(
        "-DOCSTART- -X- O\n\nJohn NNP B-PER\nlives VBZ O\n\n\nParis\tNNP\tB-LOC\n", encoding="utf-8"
    )
    records = task().read(path)
    assert [r["tokens"] for r in records] == [["John", "lives"], ["Paris"]]
    assert (
        records[0]["spans"] == [(0, 1, "PER")]
        and records[0]["lines"] == [3, 4]
        and records[1]["lines"] == [7]
    )
    pos = task(tag_column=1).read(str(path))
    assert pos[0]["kind"] == "tags" and pos[0]["tags"] == ["NNP", "VBZ"] and pos[0]["spans"] is None


def test_jsonl_tokens_tags_and_integer_tags(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"tokens": ["Li", "Wang"], "ner_tags": [1, 2]}, {"tokens": ["hi"], "ner_tags": [0]}]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    records = task(tag_names=["O", "B-PER", "I-PER"]).read(path)
    assert records[0]["tags"] == ["B-PER", "I-PER"] and records[0]["where"].endswith("line 1")
    with pytest.raises(DataError, match=r"line 1 has integer tag 1; pass tag_names"):
        task().read(path)


def test_span_format_cuts_words_at_entity_boundaries_and_keeps_offsets():
    rows = [
        {"text": "Angela Merkel visited Paris-Nord.", "spans": [[0, 13, "PER"], [22, 27, "LOC"]]}
    ]
    (record,) = task().read(rows)
    assert record["tokens"] == ["Angela", "Merkel", "visited", "Paris", "-", "Nord", "."]
    assert record["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "O"]
    assert record["offsets"][3] == (22, 27)
    (zh,) = task().read(
        [("我住在北京市", [[3, 5, "LOC"]])]
    )  # CJK: one character per word, cut at 5
    assert zh["tokens"] == list("我住在北京市") and zh["tags"] == [
        "O",
        "O",
        "O",
        "B-LOC",
        "I-LOC",
        "O",
    ]


def test_chinese_character_file_with_bmes(tmp_path):
    path = tmp_path / "zh.bmes"
    path.write_text("王 B-PER\n小 M-PER\n明 E-PER\n住 O\n在 O\n京 S-LOC\n\n", encoding="utf-8")
    (record,) = task().read(path)
    assert record["scheme"] == "bmes" and record["spans"] == [(0, 3, "PER"), (5, 6, "LOC")]
    # without an M, typed B/E/S reads as BIOES, which has the same entities
    (short,) = task().read([(["张", "三"], ["B-PER", "E-PER"])])
    assert short["scheme"] == "bioes" and short["spans"] == [(0, 2, "PER")]


def test_length_mismatch_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"tokens": ["a"], "tags": ["O"]}\n\n{"tokens": ["a", "b"], "tags": ["O"]}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=rf"{path.name} line 3 has 2 tokens but 1 tags"):
        task().read(path)
    with pytest.raises(DataError, match=r"data record 1 has 1 tokens but 2 tags"):
        task().read([(["a"], ["O"]), (["b"], ["O", "O"])])


def test_malformed_conll_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("John B-PER\nlives O\nParis\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path.name} line 3 is malformed: 'Paris' has 1 column"):
        task().read(path)
    with pytest.raises(DataError, match=r"line 1 is malformed"):  # asks for a column the file lacks
        task(tag_column=2).read(path)


def test_empty_sentences_and_empty_data():
    with pytest.raises(DataError, match=r"data record 0 is an empty sentence"):
        task().read([{"tokens": [], "tags": []}])
    with pytest.raises(DataError, match=r"eval_data record 0 is an empty sentence"):
        task().read([{"text": "  ", "spans": []}], name="eval_data")
    with pytest.raises(DataError, match="data is empty"):
        task().read([])
    with pytest.raises(DataError, match="empty text"):
        task().parse_inputs([""])


def test_bad_spans_are_data_errors():
    with pytest.raises(DataError, match="outside the text"):
        task().read([{"text": "abc", "spans": [[0, 9, "X"]]}])
    with pytest.raises(DataError, match="overlaps"):
        task().read([{"text": "New York City", "spans": [[0, 8, "LOC"], [4, 13, "LOC"]]}])


def test_unknown_tag_at_eval_names_file_and_line(tmp_path, en_model, train_opts):
    train = [(["John", "lives", "in", "Paris"], ["B-PER", "O", "O", "B-LOC"])] * 4
    dev = tmp_path / "dev.conll"
    dev.write_text("John B-PER\n\nAcme B-ORG\nCorp I-ORG\n", encoding="utf-8")
    with pytest.raises(
        DataError,
        match=rf"{dev.name} line 3: entity type 'ORG' \(token 'Acme'\) was not seen.*known: LOC, PER",
    ):
        tunekit.finetune(
            "ner", data=train, eval_data=str(dev), model=en_model, **{**train_opts, "epochs": 1}
        )
    pos = tmp_path / "pos.conll"
    pos.write_text("John NNP\nruns VBZ\n\nhe PRP\n", encoding="utf-8")
    run = tunekit.finetune(
        "pos",
        data=[(["John", "runs"], ["NNP", "VBZ"])] * 4,
        model=en_model,
        **{**train_opts, "epochs": 1},
    )
    with pytest.raises(
        DataError, match=rf"{pos.name} line 4: tag 'PRP' \(token 'he'\) was not seen"
    ):
        run.evaluate(str(pos))


def test_dataset_and_dataframe_sources():
    import datasets
    import pandas as pd

    ds = datasets.Dataset.from_dict({"tokens": [["Li", "Wang", "ran"]], "ner_tags": [[1, 2, 0]]})
    (record,) = task(tag_names=("O", "B-PER", "I-PER")).read(ds)
    assert record["spans"] == [(0, 2, "PER")] and record["where"] == "data record 0"
    frame = pd.DataFrame({"text": ["Paris is big"], "entities": [[[0, 5, "LOC"]]]})
    (record,) = task().read(frame)
    assert record["tokens"] == ["Paris", "is", "big"] and record["tags"] == ["B-LOC", "O", "O"]
