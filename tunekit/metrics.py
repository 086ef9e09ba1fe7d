"""Metric functions shared by tasks (thin wrappers over scikit-learn and scipy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_metrics(gold: Sequence[int], pred: Sequence[int]) -> dict[str, float]:
    """accuracy, macro-F1 and Matthews correlation."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(gold, pred)),
    }


def multilabel_metrics(gold: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """micro/macro F1 and subset accuracy over a ``[n, labels]`` 0/1 matrix."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "micro_f1": float(f1_score(gold, pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(gold, pred)),
    }


def regression_metrics(gold: Sequence[float], pred: Sequence[float]) -> dict[str, float]:
    """Pearson, Spearman and mean squared error (correlations are 0 for constant input)."""
    from scipy.stats import pearsonr, spearmanr

    g, p = np.asarray(gold, dtype=float), np.asarray(pred, dtype=float)
    constant = np.ptp(g) == 0 or np.ptp(p) == 0
    return {
        "pearson": 0.0 if constant else float(pearsonr(g, p)[0]),
        "spearman": 0.0 if constant else float(spearmanr(g, p)[0]),
        "mse": float(np.mean((g - p) ** 2)),
    }
