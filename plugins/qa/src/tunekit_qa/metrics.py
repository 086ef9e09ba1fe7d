"""Exact match and F1 of extracted answers.

English (and other space-separated languages) follow the official SQuAD v2.0 evaluation
script: answers are lower-cased, stripped of punctuation and of the articles *a*, *an*,
*the*, and compared as bags of tokens; an unanswerable question's gold answer is ``""``.

Chinese follows the CMRC 2018 evaluation script: every CJK character is one token (runs of
other characters are split into words), CMRC's punctuation set is removed, F1 is
computed from the *longest common substring* of the two token sequences, and exact match
compares the strings without punctuation. (CMRC splits non-Chinese runs with
``nltk.word_tokenize``; here a ``\\w+|[^\\w\\s]`` regex does, so nltk is not needed.)

Scores are the maximum over the gold answers, averaged over questions, in ``[0, 1]``.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
# the punctuation list of cmrc2018_evaluate.py
CMRC_PUNCTUATION = set("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』") | {"……"}


def is_chinese(text: str, *, share: float = 0.2) -> bool:
    """Whether at least *share* of the non-space characters of *text* are CJK ideographs."""
    chars = [c for c in text if not c.isspace()]
    return bool(chars) and sum(bool(_CJK.match(c)) for c in chars) / len(chars) >= share


# ---- SQuAD -----------------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def squad_f1(gold: str, pred: str) -> float:
    gold_tokens = normalize_answer(gold).split() if gold else []
    pred_tokens = normalize_answer(pred).split() if pred else []
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    same = sum((collections.Counter(gold_tokens) & collections.Counter(pred_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


# ---- CMRC 2018 ---------------------------------------------------------------------------
def mixed_segmentation(text: str, *, remove_punctuation: bool = True) -> list[str]:
    """CJK characters one by one, other runs split into words (CMRC 2018)."""
    out: list[str] = []
    run = ""
    for ch in text.lower().strip():
        if remove_punctuation and ch in CMRC_PUNCTUATION:
            continue
        if _CJK.match(ch) or ch in CMRC_PUNCTUATION:
            if run:
                out += re.findall(r"\w+|[^\w\s]", run)
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out += re.findall(r"\w+|[^\w\s]", run)
    return out


def _strip_cmrc_punctuation(text: str) -> str:
    return "".join(ch for ch in text.lower().strip() if ch not in CMRC_PUNCTUATION)


def longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common contiguous run of *a* and *b* (dynamic programming)."""
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def cmrc_exact(gold: str, pred: str) -> float:
    return float(_strip_cmrc_punctuation(gold) == _strip_cmrc_punctuation(pred))


def cmrc_f1(gold: str, pred: str) -> float:
    gold_segs, pred_segs = mixed_segmentation(gold), mixed_segmentation(pred)
    if not gold_segs or not pred_segs:
        return float(gold_segs == pred_segs)
    common = longest_common_substring(gold_segs, pred_segs)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_segs), common / len(gold_segs)
    return 2 * precision * recall / (precision + recall)


# ---- per question / corpus ------------------------------------------------------------------
def score_answer(golds: Sequence[str], pred: str, *, chinese: bool = False) -> tuple[float, float]:
    """(exact, f1) of one prediction: the best over the gold answers (``[""]`` when none)."""
    exact, f1 = (cmrc_exact, cmrc_f1) if chinese else (squad_exact, squad_f1)
    golds = [g for g in golds if (normalize_answer(g) if not chinese else g.strip())] or [""]
    return max(exact(g, pred) for g in golds), max(f1(g, pred) for g in golds)


def best_null_threshold(
    diffs: Sequence[float], answerable: Sequence[bool], span_scores: Sequence[float]
) -> tuple[float, float]:
    """The null-score threshold that maximises the mean score, and that score.

    A question is predicted unanswerable when its ``null_score_diff`` (null score minus the
    best span's score) is above the threshold. An answerable question then scores 0, an
    unanswerable one 1; below it, the answerable question scores *span_scores* (its best
    span's exact/F1) and the unanswerable one 0. Same search as ``find_best_thresh`` in the
    official SQuAD v2.0 script (every split point of the sorted diffs, plus "always
    null"), except that the threshold returned is the middle between the last answered
    diff and the next one rather than the last answered diff itself.
    """
    n = len(diffs)
    if n == 0:
        return 0.0, 0.0
    # start with every question null (threshold below every diff)
    total = float(sum(not a for a in answerable))
    best_total, best_threshold = total, float(min(diffs)) - 1.0
    order = sorted(range(n), key=lambda i: diffs[i])
    for k, i in enumerate(order):
        total += span_scores[i] if answerable[i] else -1.0
        tied = k + 1 < n and diffs[order[k + 1]] == diffs[i]  # answer the whole tie or none
        if not tied and total > best_total:
            # the middle of the interval of equally good thresholds (up to the next diff),
            # not its edge: a margin on both sides for questions not seen here
            following = diffs[order[k + 1]] if k + 1 < n else diffs[i] + 2.0
            best_total, best_threshold = total, (float(diffs[i]) + float(following)) / 2
    return best_threshold, best_total / n
