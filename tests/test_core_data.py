"""Data reading: every accepted source, every listed bad input raising :class:`DataError`
with a message naming the file / record / column, and the seeded stratified eval split."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import tunekit
from tunekit.classify import ClassifyConfig, ClassifyTask
from tunekit.data import read_table, split_records
from tunekit.errors import DataError, TunekitError

ROWS = [{"text": f"text number {i}", "label": "pos" if i % 2 else "neg"} for i in range(10)]


def read(source, **options):
    return ClassifyTask(ClassifyConfig(**options)).read(source, name="data")


# ---- every accepted source gives the same records --------------------------------------


def write_all_formats(tmp_path):
    import pandas as pd

    df = pd.DataFrame(ROWS)
    paths = {
        "csv": tmp_path / "d.csv",
        "tsv": tmp_path / "d.tsv",
        "jsonl": tmp_path / "d.jsonl",
        "json": tmp_path / "d.json",
        "parquet": tmp_path / "d.parquet",
    }
    df.to_csv(paths["csv"], index=False)
    df.to_csv(paths["tsv"], index=False, sep="\t")
    df.to_json(paths["jsonl"], orient="records", lines=True)
    paths["json"].write_text(json.dumps({"data": ROWS}))
    df.to_parquet(paths["parquet"])
    return df, paths


def test_every_source_kind_reads_the_same_records(tmp_path):
    import datasets

    df, paths = write_all_formats(tmp_path)
    sources = [*paths.values(), str(paths["csv"]), df, datasets.Dataset.from_list(ROWS)]
    sources += [datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}), ROWS]
    sources += [[(r["text"], r["label"]) for r in ROWS]]
    for source in sources:
        assert read(source) == ROWS, type(source)


def test_column_mapping_and_auto_detection(tmp_path):
    rows = [{"id": i, "review": r["text"], "stars": r["label"]} for i, r in enumerate(ROWS)]
    assert read(rows, label_column="stars") == ROWS  # "review" is auto-detected
    renamed = [{"Sentence": r["text"], "Category": r["label"]} for r in ROWS]
    assert read(renamed) == ROWS  # detection ignores case
    numeric = [{"text": r["text"], "label": i % 3} for i, r in enumerate(ROWS)]
    assert {r["label"] for r in read(numeric)} == {"0", "1", "2"}


# ---- bad inputs ------------------------------------------------------------------------


def check(exc_info, *fragments):
    assert isinstance(exc_info.value, DataError) and isinstance(exc_info.value, TunekitError)
    msg = str(exc_info.value)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as err:
        read(path)
    check(err, "file not found", str(path))
    with pytest.raises(DataError) as err:
        tunekit.finetune(task="classify", data=ROWS, eval_data=str(path))
    check(err, "eval_data file not found", str(path))


def test_unknown_format(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError) as err:
        read(path)
    check(err, str(path), "unknown format '.xlsx'", ".csv")


def test_directory_and_unsupported_type(tmp_path):
    with pytest.raises(DataError) as err:
        read(tmp_path)
    check(err, "is a directory")
    with pytest.raises(DataError) as err:
        read(42)
    check(err, "unsupported type int")


def test_missing_named_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence,label\nfine,pos\nbad,neg\n")
    with pytest.raises(DataError) as err:
        read(path, text_column="sentense")
    check(
        err,
        f"data file {path} has no column 'sentense'",
        "text_column=",
        "did you mean 'sentence'",
        "columns are: sentence, label",
    )


def test_no_detectable_column():
    with pytest.raises(DataError) as err:
        read([{"foo": "x", "label": "a"}])
    check(err, "no text column", "columns are: foo, label", "text_column=")
    with pytest.raises(DataError) as err:
        read([{"text": "x", "bar": "a"}])
    check(err, "no label column", "label_column=")


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.csv", ""), ("header.csv", "text,label\n"), ("empty.jsonl", ""), ("empty.json", "[]")],
)
def test_empty_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as err:
        read(path)
    check(err, str(path), "empty")


def test_empty_in_memory_data():
    import pandas as pd

    for source in ([], pd.DataFrame({"text": [], "label": []})):
        with pytest.raises(DataError) as err:
            read(source)
        check(err, "data is empty")
    with pytest.raises(DataError) as err:
        tunekit.finetune(task="classify", data=None)
    check(err, "data is required")


@pytest.mark.parametrize("text", ["", "   ", None, 3.5])
def test_empty_text(text):
    rows = [{"text": "fine", "label": "a"}, {"text": text, "label": "b"}]
    with pytest.raises(DataError) as err:
        read(rows)
    check(err, "record 1", "column 'text'")


def test_empty_text_in_a_file_names_file_record_and_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("body,label\nfine,a\n,b\n")
    with pytest.raises(DataError) as err:
        tunekit.finetune(task="classify", data=path)
    check(err, f"data file {path} record 1", "column 'body'")


def test_missing_label_in_a_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,a\nalso fine,b\nno label here,\n")
    with pytest.raises(DataError) as err:
        read(path)
    check(err, f"data file {path} record 2", "no label in column 'label'")
    with pytest.raises(DataError) as err:
        read([{"text": "x", "target": float("nan")}])
    check(err, "record 0", "column 'target'")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "gbk.csv"
    path.write_bytes(b"text,label\nfine,a\n" + "很好,b\n".encode("gbk"))
    with pytest.raises(DataError) as err:
        read(path)
    check(err, str(path), "not UTF-8", "line 3")


def test_broken_json(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"text": "a", "label": "b"},')
    with pytest.raises(DataError) as err:
        read(path)
    check(err, str(path), "not valid JSON")


def test_too_many_tuple_fields():
    with pytest.raises(DataError) as err:
        read([("a", "b"), ("a", "b", "c")])
    check(err, "record 1 has 3 fields")


def test_one_label_only():
    task = ClassifyTask()
    with pytest.raises(DataError) as err:
        task.setup(read([{"text": "a", "label": "x"}, {"text": "b", "label": "x"}]))
    check(err, "only one label", "'x'")


def test_label_unseen_at_evaluation_names_label_and_record():
    task = ClassifyTask()
    task.setup(read(ROWS))
    eval_records = read([{"text": "a", "label": "pos"}, {"text": "b", "label": "neutral"}])
    with pytest.raises(DataError) as err:
        task.metrics([{"label": "pos"}, {"label": "pos"}], eval_records)
    check(
        err,
        "label 'neutral' in record 1 was not seen in the training data",
        "known labels: neg, pos",
    )
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(
        vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b"])}
    )
    with pytest.raises(DataError) as err:
        task.encode(eval_records, tok, max_length=8, with_labels=True)
    check(err, "'neutral' in record 1")


def test_regression_needs_numbers():
    with pytest.raises(DataError) as err:
        read([{"text": "a", "label": 1.0}, {"text": "b", "label": "high"}], problem="regression")
    check(err, "record 1", "'high'", "regression")


def test_read_table_names_the_argument(tmp_path):
    with pytest.raises(DataError) as err:
        read_table(tmp_path / "x.csv", name="eval_data")
    check(err, "eval_data file not found")


# ---- eval split ------------------------------------------------------------------------


def key(record):
    return record["label"]


def test_eval_split_is_stratified_and_seeded():
    records = [{"text": f"t{i}", "label": "a" if i < 80 else "b"} for i in range(100)]
    train, evals = split_records(records, fraction=0.1, seed=7, key=key)
    assert Counter(r["label"] for r in evals) == {"a": 8, "b": 2}
    assert Counter(r["label"] for r in train) == {"a": 72, "b": 18}
    assert {r["text"] for r in train}.isdisjoint(r["text"] for r in evals)
    assert len(train) + len(evals) == 100
    again = split_records(records, fraction=0.1, seed=7, key=key)
    assert again == (train, evals)
    other = split_records(records, fraction=0.1, seed=8, key=key)
    assert other[1] != evals
    assert Counter(r["label"] for r in other[1]) == {"a": 8, "b": 2}


def test_eval_split_keeps_a_training_example_of_every_label():
    records = [{"text": f"t{i}", "label": "a"} for i in range(20)] + [
        {"text": "lonely", "label": "b"}
    ]
    train, evals = split_records(records, fraction=0.5, seed=0, key=key)
    assert "lonely" in {r["text"] for r in train}
    assert Counter(r["label"] for r in evals) == {"a": 10}


def test_eval_split_too_small_is_an_error():
    records = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    with pytest.raises(DataError, match="leaves no evaluation data"):
        split_records(records, fraction=0.1, seed=0, key=key)


def test_text_inputs_accepts_texts_and_dicts_and_names_a_bad_item():
    from tunekit.data import text_inputs

    assert text_inputs("one") == [{"text": "one"}]
    assert text_inputs(["a", {"text": "b"}]) == [{"text": "a"}, {"text": "b"}]
    with pytest.raises(DataError, match=r"document 1 is empty.*pass non-empty texts"):
        text_inputs(["fine", "  "], what="document")
    with pytest.raises(DataError, match=r"predict input 0 .*None"):
        text_inputs([{"label": "x"}])


def test_in_memory_rows_reads_tables_and_names_bad_sources():
    import pandas as pd

    from tunekit.data import in_memory_rows

    rows = [{"a": 1}]
    assert in_memory_rows(rows, name="data", accepts="a list", unit="rows") is rows
    frame = in_memory_rows(pd.DataFrame({"a": [1, 2]}), name="data", accepts="a list", unit="rows")
    assert [r["a"] for r in frame] == [1, 2]
    with pytest.raises(DataError, match=r"data has an unsupported type int; pass a path, a list"):
        in_memory_rows(3, name="data", accepts="a list", unit="rows")
    with pytest.raises(DataError, match=r"eval_data is empty: it has no questions"):
        in_memory_rows([], name="eval_data", accepts="a list of dicts", unit="questions")
