"""Post-processing steps of ONNX exports that run outside the graph, in numpy only.

An ONNX export (``run.export(dir, format="onnx")``) holds the network up to its scores
(logits, span logits, similarities). Decoding that is a search rather than arithmetic runs
here, after ``onnxruntime``: today the constrained Viterbi decoding of a CRF tagging head.
This module imports numpy only, and a copy of it ships in every export that needs it
(``postprocess.py``), so the export can be served without tunekit:

.. code-block:: python

    import json, numpy as np, onnxruntime as ort
    from postprocess import crf_viterbi_tags         # the copy in the export directory

    meta = json.load(open("tunekit_onnx.json"))
    arrays = {k: np.asarray(v) for k, v in meta["postprocess"]["arrays"].items()}
    logits = session.run(["logits"], feeds)[0]
    tags = crf_viterbi_tags(logits, arrays, word_starts=..., sentence_start=..., sentence_end=...)

tunekit's own runtime (:mod:`tunekit.onnx_runtime`) imports this module from the installed
package, never the copy (loading an export never runs code from it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: score added to a forbidden transition / start / end (the CRF head's ``FORBIDDEN``)
FORBIDDEN = -1e4


def _viterbi(
    emissions: np.ndarray,
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> list[int]:
    """Best tag path of one sequence: ``emissions [n, tags]`` (n >= 1)."""
    score = start + emissions[0]
    history = []
    for step in range(1, emissions.shape[0]):
        total = score[:, None] + transitions + emissions[step][None, :]
        history.append(total.argmax(0))
        score = total.max(0)
    score = score + end
    best = [int(score.argmax())]
    for back in reversed(history):
        best.append(int(back[best[-1]]))
    return best[::-1]


def crf_viterbi_tags(
    logits: np.ndarray,
    arrays: Mapping[str, np.ndarray],
    *,
    word_starts: np.ndarray | None = None,
    sentence_start: np.ndarray | None = None,
    sentence_end: np.ndarray | None = None,
) -> np.ndarray:
    """Viterbi tags ``[batch, tokens]`` (``-1`` where a token is not scored) of a CRF
    tagging head, exactly as the head decodes outside training.

    - *logits*: the graph's per-token emissions ``[batch, tokens, tags]``;
    - *arrays*: ``transitions [tags, tags]`` (forbidden transitions already set to
      :data:`FORBIDDEN`), ``start_transitions`` / ``end_transitions [tags]``, and
      ``allowed_start`` / ``allowed_end [tags]`` (booleans: which tags may begin / end a
      sentence in the tag scheme), as stored in the export's ``tunekit_onnx.json``;
    - *word_starts* ``[batch, tokens]``: ``1`` on the first subword of each word (the
      scored positions; all tokens when absent); *sentence_start* / *sentence_end*
      ``[batch]``: ``1`` where a window begins / ends its sentence.

    The path runs over the scored positions only (word-to-word transitions).

    Example::

        tags = crf_viterbi_tags(logits, arrays, word_starts=batch["word_starts"])
    """
    logits = np.asarray(logits, dtype=np.float32)
    batch, length, _ = logits.shape
    transitions = np.asarray(arrays["transitions"], dtype=np.float32)
    start = np.asarray(arrays["start_transitions"], dtype=np.float32)
    end = np.asarray(arrays["end_transitions"], dtype=np.float32)
    penalty_start = (~np.asarray(arrays["allowed_start"], dtype=bool)).astype(np.float32)
    penalty_end = (~np.asarray(arrays["allowed_end"], dtype=bool)).astype(np.float32)
    if word_starts is None:
        mask = np.ones((batch, length), dtype=bool)
    else:
        mask = np.asarray(word_starts)[:, :length] == 1
    tags = np.full((batch, length), -1, dtype=np.int64)
    for row in range(batch):
        positions = np.flatnonzero(mask[row])
        # an unscored window still gets one (discarded) step at position 0, as in the head
        steps = positions if positions.size else np.zeros(1, dtype=np.int64)
        emissions = logits[row, steps].copy()
        if sentence_start is not None and int(np.asarray(sentence_start).reshape(-1)[row]):
            emissions[0] += penalty_start * FORBIDDEN
        if sentence_end is not None and int(np.asarray(sentence_end).reshape(-1)[row]):
            emissions[-1] += penalty_end * FORBIDDEN
        path = _viterbi(emissions, transitions, start, end)
        if positions.size:
            tags[row, positions] = path[: positions.size]
    return tags


#: post-processing steps by the name an export's ``tunekit_onnx.json`` gives
POSTPROCESSORS = {"crf-viterbi": crf_viterbi_tags}
