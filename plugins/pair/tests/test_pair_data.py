"""Reading pairs: column detection, headerless TSV, tuples, predict inputs, bad rows."""

import pytest
from tunekit_pair.data import PAIR_COLUMNS

import tunekit
from tunekit.errors import ConfigError, DataError

EN_PAIRS = [
    ("how old are you", "what is your age", 1),
    ("how old are you", "where do you live", 0),
    ("the cat sat on the mat", "a cat was sitting on the mat", 1),
    ("the cat sat on the mat", "the stock market fell today", 0),
]


def task(name="pair-sim", **options):
    cls = tunekit.get_task(name)
    return cls(cls.Config(**options))


@pytest.mark.parametrize("columns", PAIR_COLUMNS[:5])
def test_text_columns_are_detected_from_common_names(columns):
    a, b = columns
    rows = [{a: x, b: y, "label": z} for x, y, z in EN_PAIRS]
    records = task().read(rows)
    assert [(r["text_a"], r["text_b"], r["label"]) for r in records] == [
        (x, y, str(z)) for x, y, z in EN_PAIRS
    ]


def test_text_columns_option_names_them():
    rows = [{"q": x, "d": y, "rel": z, "other": "noise"} for x, y, z in EN_PAIRS]
    records = task(text_columns=("q", "d"), label_column="rel").read(rows)
    assert records[0]["text_a"] == "how old are you" and records[0]["text_b"] == "what is your age"
    with pytest.raises(DataError, match="text_columns"):
        task(text_columns=("q", "doc")).read(rows)
    with pytest.raises(ConfigError, match="two columns"):
        task(text_columns="q")


def test_unknown_columns_say_how_to_name_them():
    with pytest.raises(DataError, match=r"text_columns=\('first', 'second'\)"):
        task().read([{"x": "a", "y": "b", "label": 1}])


def test_headerless_lcqmc_tsv(tmp_path):
    path = tmp_path / "train.tsv"
    # LCQMC style: no header, quotes left unbalanced inside the texts
    path.write_text(
        '喜欢打篮球的男生喜欢什么样的女生\t爱打篮球的男生喜欢什么样的女生\t1\n我手机丢了，我想换个"手机\t我想买个新手机，求推荐\t1\n大家觉得她好看吗\t大家觉得跑男好看吗？\t0\n',
        encoding="utf-8",
    )
    records = task().read(str(path))
    assert len(records) == 3
    assert records[1]["text_a"] == '我手机丢了，我想换个"手机' and records[1]["label"] == "1"
    assert records[2]["where"] == "data record 2 (line 3)"


def test_tsv_with_header_and_txt_suffix(tmp_path):
    path = tmp_path / "dev.txt"
    path.write_text(
        "sentence1\tsentence2\tlabel\nhow old are you\twhat is your age\t1\nhow old are you\twhere do you live\t0\n"
    )
    records = task().read(path)
    assert [r["label"] for r in records] == ["1", "0"] and records[0][
        "text_b"
    ] == "what is your age"


def test_list_of_tuples_and_labels_normalised():
    records = task().read([("a b", "c d", True), ("a b", "e f", 0.0), ("x", "y", "1")])
    assert [r["label"] for r in records] == ["1", "0", "1"]


def test_bad_tsv_rows_name_the_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("how old are you\twhat is your age\t1\nonly one field here\n")
    with pytest.raises(DataError, match="line 2 has 1 tab-separated fields"):
        task().read(path)


def test_missing_text_names_the_record():
    rows = [
        {"text_a": "how old are you", "text_b": "what is your age", "label": 1},
        {"text_a": "where", "text_b": "", "label": 0},
    ]
    with pytest.raises(DataError, match=r"data record 1 .*'text_b'"):
        task().read(rows)
    with pytest.raises(DataError, match=r"eval_data record 0 .*'text_a'"):
        task().read([{"text_a": None, "text_b": "x", "label": 1}], name="eval_data")


def test_missing_label_names_the_record():
    with pytest.raises(DataError, match="data record 1 has no label"):
        task().read([("a", "b", 1), ("a", "c", None)])


def test_non_numeric_sts_score_names_the_record(tmp_path):
    path = tmp_path / "sts.tsv"
    path.write_text(
        "a plane takes off\tan air plane is taking off\t4.8\na man plays\ta man sings\thigh\n"
    )
    with pytest.raises(DataError, match=r"data record 1 \(line 2\) has score 'high'.*not a number"):
        task("sts").read(path)
    assert [r["label"] for r in task("sts").read([("a", "b", "3.5"), ("a", "c", 1)])] == [3.5, 1.0]


def test_score_labels_for_pair_sim_point_to_sts():
    with pytest.raises(DataError, match="task='sts'"):
        task().read([("a", "b", 0.7)])


def test_pair_sim_needs_exactly_two_labels(en_model, train_opts):
    three = [(a, b, c) for a, b, c in EN_PAIRS] + [("a", "b", 2)]
    with pytest.raises(DataError, match="pair-cls"):
        tunekit.finetune("pair-sim", data=three, model=en_model, **train_opts)


def test_label_outside_the_schema_names_the_record(en_model, train_opts):
    eval_rows = [
        ("how old are you", "what is your age", 1),
        ("how old are you", "where do you live", "maybe"),
    ]
    with pytest.raises(DataError, match=r"label 'maybe' in eval_data record 1 was not seen"):
        tunekit.finetune(
            "pair-sim",
            data=EN_PAIRS,
            eval_data=eval_rows,
            model=en_model,
            **{**train_opts, "epochs": 1},
        )


def test_predict_inputs_tuples_and_dicts():
    t = task(text_columns=("q", "d"))
    assert t.parse_inputs(("a", "b")) == [
        {"text_a": "a", "text_b": "b", "where": "predict input 0"}
    ]
    records = t.parse_inputs([["a", "b"], {"q": "c", "d": "e"}])
    assert [(r["text_a"], r["text_b"]) for r in records] == [("a", "b"), ("c", "e")]
    assert task().parse_inputs([{"premise": "p", "hypothesis": "h"}])[0]["text_b"] == "h"
    with pytest.raises(DataError, match="predict input 0 .* takes pairs"):
        task().parse_inputs(["just one text"])
    with pytest.raises(DataError, match="predict input 1 has an empty or non-text second text"):
        task().parse_inputs([("a", "b"), ("a", " ")])
    with pytest.raises(DataError, match="two text keys"):
        task().parse_inputs([{"text": "a"}])


def test_tab_separated_string_is_a_pair():
    assert (
        task().parse_inputs("how old are you\twhat is your age")[0]["text_b"] == "what is your age"
    )
    with pytest.raises(DataError, match="TAB"):
        task().parse_inputs("a\tb\tc")
