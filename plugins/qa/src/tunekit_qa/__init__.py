"""tunekit plugin ``tunekit-qa``: extractive question answering (SQuAD 1.1/2.0, CMRC) with
document-stride windows, n-best span decoding, unanswerable questions and EM/F1."""

from .decoding import decode_question, window_spans
from .heads import SpanHead
from .metrics import cmrc_exact, cmrc_f1, normalize_answer, score_answer, squad_exact, squad_f1
from .run import QARun
from .task import QAConfig, QATask

__all__ = [
    "QAConfig",
    "QARun",
    "QATask",
    "SpanHead",
    "cmrc_exact",
    "cmrc_f1",
    "decode_question",
    "normalize_answer",
    "score_answer",
    "squad_exact",
    "squad_f1",
    "window_spans",
]
