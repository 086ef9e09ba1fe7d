"""From start/end logits of every window to one answer per question.

Per window, every span ``(s, e)`` of *context* tokens with ``s <= e < s +
max_answer_length`` scores ``start_logits[s] + end_logits[e]`` — all of them, not only the
combinations of the top-20 starts and ends that transformers' ``run_qa`` post-processing
tries, so the best span is the exact arg-max (on trained models the two agree; see
``benchmarks/bench_qa.py``). The ``n_best_size`` best spans of all windows of a question
are mapped to character offsets of the original context through the tokenizer's offset
mapping, merged (one entry per character span, its best score) and ranked; their
probabilities are the softmax of the scores over that n-best list.

Unanswerable questions (SQuAD 2.0): the null score of a window is ``start_logits[cls] +
end_logits[cls]``; a question's null score is the *minimum* over its windows (every
window must agree there is no answer), as in BERT's ``run_squad`` and transformers'
``postprocess_qa_predictions``. The answer is empty when ``null score − best span score``
is above ``null_threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def window_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    is_context: np.ndarray,
    *,
    max_answer_length: int,
    n_best: int,
) -> list[tuple[float, int, int]]:
    """The *n_best* best ``(score, start_token, end_token)`` spans of one window, best first.

    Only spans whose both ends are context tokens (``is_context``) and that are at most
    *max_answer_length* tokens long count.
    """
    n = len(start_logits)
    width = min(max_answer_length, n)
    if n == 0 or width <= 0 or not is_context.any():
        return []
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    scores = np.full((n, width), -np.inf)
    for d in range(width):  # span length d + 1
        valid = is_context[: n - d] & is_context[d:]
        scores[: n - d, d] = np.where(valid, start_logits[: n - d] + end_logits[d:], -np.inf)
    flat = scores.ravel()
    finite = np.flatnonzero(np.isfinite(flat))
    if len(finite) > n_best:
        top = finite[np.argpartition(-flat[finite], n_best - 1)[:n_best]]
    else:
        top = finite
    # best first; ties broken by position so the result does not depend on argpartition
    top = sorted(top.tolist(), key=lambda i: (-flat[i], i))
    return [(float(flat[i]), i // width, i // width + i % width) for i in top]


def decode_question(
    windows: Sequence[dict[str, Any]],
    context: str,
    *,
    max_answer_length: int,
    n_best_size: int,
    allow_unanswerable: bool,
    null_threshold: float,
    top_k: int = 1,
) -> dict[str, Any] | list[dict[str, Any]]:
    """One question's answer from its windows.

    Each window is ``{"start_logits", "end_logits", "offsets", "cls_index"}`` where
    *offsets* gives ``(char_start, char_end)`` per token and ``None`` for tokens outside
    the context. Returns ``{"answer", "score", "start", "end"}`` (``context[start:end] ==
    answer``; empty answer with start = end = 0 when unanswerable), plus ``null_score_diff``
    and ``best_span`` when *allow_unanswerable*; a list of the *top_k* best when
    ``top_k > 1`` (the decided answer first).
    """
    spans: dict[tuple[int, int], float] = {}
    null_score = None
    for window in windows:
        offsets = window["offsets"]
        start_logits = np.asarray(window["start_logits"], dtype=np.float64)[: len(offsets)]
        end_logits = np.asarray(window["end_logits"], dtype=np.float64)[: len(offsets)]
        is_context = np.array([o is not None for o in offsets], dtype=bool)
        cls = window.get("cls_index", 0)
        window_null = float(start_logits[cls] + end_logits[cls])
        null_score = window_null if null_score is None else min(null_score, window_null)
        for score, s, e in window_spans(
            start_logits,
            end_logits,
            is_context,
            max_answer_length=max_answer_length,
            n_best=n_best_size,
        ):
            key = (int(offsets[s][0]), int(offsets[e][1]))
            if key[1] > key[0] and score > spans.get(key, -np.inf):
                spans[key] = score
    ranked = sorted(spans.items(), key=lambda kv: (-kv[1], kv[0]))[:n_best_size]
    candidates = [
        {"answer": context[a:b], "start": a, "end": b, "logit": s} for (a, b), s in ranked
    ]
    if allow_unanswerable and null_score is not None:
        candidates.append({"answer": "", "start": 0, "end": 0, "logit": null_score})
    if candidates:
        logits = np.array([c["logit"] for c in candidates])
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        for c, p in zip(candidates, probs):
            c["score"] = float(p)
    spans_only = [c for c in candidates if c["answer"]]
    best = spans_only[0] if spans_only else None
    if best is None:
        decided = {"answer": "", "start": 0, "end": 0, "logit": null_score or 0.0, "score": 1.0}
    else:
        decided = best
    extra: dict[str, Any] = {}
    if allow_unanswerable:
        diff = float(null_score - best["logit"]) if best is not None else float("inf")
        if diff > null_threshold:
            decided = next(c for c in candidates if not c["answer"])
        extra = {
            "null_score_diff": diff,
            "best_span": _public(best) if best is not None else None,
        }
    result = {**_public(decided), **extra}
    if top_k <= 1:
        return result
    rest = [
        _public(c)
        for c in sorted(candidates, key=lambda c: -c["logit"])
        if (c["start"], c["end"], c["answer"])
        != (decided["start"], decided["end"], decided["answer"])
    ]
    return [result, *rest[: top_k - 1]]


def _public(candidate: dict[str, Any]) -> dict[str, Any]:
    return {
        "answer": candidate["answer"],
        "score": candidate["score"],
        "start": candidate["start"],
        "end": candidate["end"],
    }
