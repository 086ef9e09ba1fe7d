"""Exact match / F1: SQuAD normalisation, CMRC character-level F1 for Chinese (chosen by
language= or detected), several gold answers, unanswerable questions and the null
threshold search."""

import pytest
from tunekit_qa import cmrc_f1, normalize_answer, score_answer, squad_f1
from tunekit_qa.metrics import best_null_threshold, is_chinese
from tunekit_qa.task import QAConfig, QATask

from tunekit.config import build_config


def test_squad_normalisation_and_token_f1():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert score_answer(["the Eiffel Tower"], "Eiffel Tower") == (1.0, 1.0)
    # two of three gold tokens: precision 1, recall 2/3
    assert squad_f1("Paris France Europe", "Paris France") == pytest.approx(0.8)
    assert score_answer(["London"], "Paris") == (0.0, 0.0)
    # several gold answers: the best one counts
    assert score_answer(["in the spring", "spring", "early spring"], "spring") == (1.0, 1.0)
    # unanswerable: only the empty answer is right
    assert score_answer([], "") == (1.0, 1.0)
    assert score_answer([], "Paris") == (0.0, 0.0)


def test_cmrc_character_f1_for_chinese():
    # longest common substring 老师 (2 of 7 characters): precision 1, recall 2/7
    assert cmrc_f1("做了十年的老师", "老师") == pytest.approx(2 * (2 / 7) / (1 + 2 / 7))
    # whitespace-tokenised SQuAD F1 sees one token each and scores 0
    assert squad_f1("做了十年的老师", "老师") == 0.0
    assert score_answer(["成都。"], "成都", chinese=True) == (1.0, 1.0)  # CMRC punctuation
    # an English run is one token next to per-character Chinese: 1 of 3 tokens
    assert cmrc_f1("iPhone手机", "iPhone") == pytest.approx(2 * (1 / 3) / (1 + 1 / 3))
    assert is_chinese("李娜出生于成都。") and not is_chinese("Ada was born in London.")


@pytest.mark.parametrize("language,expected", [("auto", 0.444), ("zh", 0.444), ("en", 0.0)])
def test_language_option_picks_the_metric(language, expected):
    task = QATask(build_config(QAConfig, {"language": language}, owner="qa"))
    record = {
        "context": "她后来在杭州做了十年的老师。",
        "answers": [{"text": "做了十年的老师", "start": 6}],
    }
    metrics = task.metrics([{"answer": "老师"}], [record])
    assert metrics["f1"] == pytest.approx(expected, abs=1e-3)


def test_null_threshold_search_maximises_the_score():
    # diffs are null score - best span score; above the threshold → predict "no answer".
    # Two answerable questions (right spans, diffs -3 and 1) and two unanswerable ones
    # (diffs 0.5 and 4). t=-3 scores 1+0+1+1, t=1 scores 1+1+0+1 (both 3/4); "always
    # null" and "always answer" score 2/4. The first best interval is kept, and the
    # threshold is its middle: between -3 and the next diff, 0.5.
    diffs = [-3.0, 1.0, 0.5, 4.0]
    answerable = [True, True, False, False]
    threshold, score = best_null_threshold(diffs, answerable, [1.0, 1.0, 0.0, 0.0])
    assert threshold == pytest.approx(-1.25) and score == pytest.approx(0.75)
    # perfectly separated: answerable diffs -9, -6; unanswerable 2, 5 → threshold -2
    threshold, score = best_null_threshold(
        [-9.0, 2.0, -6.0, 5.0], [True, False, True, False], [1.0, 0, 1.0, 0]
    )
    assert threshold == pytest.approx(-2.0) and score == 1.0
    # a wrong span is not worth answering: below every diff
    threshold, score = best_null_threshold([-1.0, 2.0], [True, False], [0.0, 0.0])
    assert threshold < -1.0 and score == pytest.approx(0.5)
    # equal diffs are answered together or not at all
    threshold, score = best_null_threshold([0.0, 0.0], [True, False], [1.0, 0.0])
    assert score == pytest.approx(0.5)
