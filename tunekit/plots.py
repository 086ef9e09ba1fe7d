"""Plots of runs (matplotlib, Agg backend: works without a display)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError, TunekitError
from .history import History


def plot_history(
    history: History,
    path: str | os.PathLike,
    *,
    metric: str | None = None,
    layer_weights: list[float] | None = None,
) -> str:
    """Learning curve: train and eval loss per epoch, and one metric on a second panel;
    with *layer_weights* (a learned layer mix) a bar chart of them on a last panel.

    *metric* (default: the first metric of the history) must be a column of the history
    with values; another name is a :class:`~tunekit.errors.ConfigError` listing the ones
    it has."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    if not len(history):
        raise TunekitError("the history is empty: there is nothing to plot yet")
    epochs = history.column("epoch")
    skip = {"epoch", "step", "train_loss", "eval_loss", "seconds"}
    known = [
        c
        for c in history.columns
        if c not in skip and any(v is not None for v in history.column(c))
    ]
    if metric is None:
        metric = known[0] if known else None
    elif metric not in known:
        from .errors import close_matches_hint

        raise ConfigError(
            f"metric={metric!r} is not in this run's history{close_matches_hint(metric, known) or '.'} "
            f"Metrics it has: {', '.join(known) or '(none: the run was not evaluated)'}"
        )
    panels = 1 + bool(metric) + bool(layer_weights)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    ax = axes[0][0]
    for name in ("train_loss", "eval_loss"):
        values = history.column(name)
        if any(v is not None for v in values):
            ax.plot(epochs, values, marker="o", label=name.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.legend()
    if metric:
        ax = axes[0][1]
        ax.plot(epochs, history.column(metric), marker="o", color="tab:green")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
    if layer_weights:
        ax = axes[0][panels - 1]
        names = ["emb", *(str(i) for i in range(1, len(layer_weights)))]
        ax.bar(names, layer_weights, color="tab:purple")
        ax.set_xlabel("layer")
        ax.set_title("learned layer weights")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def plot_confusion(
    gold: Sequence[str],
    predicted: Sequence[str],
    labels: Sequence[str],
    path: str | os.PathLike,
    *,
    normalize: str | None = None,
    title: str | None = None,
) -> str:
    """Confusion matrix of *gold* vs *predicted* labels (rows: true label, columns:
    predicted), in the order of *labels*, with the count (or, with ``normalize="true"`` /
    ``"pred"`` / ``"all"``, the fraction) in every cell; the title gives the accuracy."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    if normalize not in (None, "true", "pred", "all"):
        raise ConfigError(
            f"normalize={normalize!r}: use None (counts), 'true' (rows), 'pred' (columns) or 'all'"
        )
    if not gold:
        raise TunekitError("no labelled records: there is no confusion matrix to draw")
    matrix = confusion_matrix(gold, predicted, labels=list(labels), normalize=normalize)
    size = max(4.0, 0.6 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    ConfusionMatrixDisplay(matrix, display_labels=list(labels)).plot(
        ax=ax,
        cmap="Blues",
        colorbar=True,
        values_format=".2f" if normalize else "d",
        xticks_rotation=45 if max(len(str(x)) for x in labels) > 4 else "horizontal",
    )
    accuracy = sum(g == p for g, p in zip(gold, predicted)) / len(gold)
    ax.set_title(title or f"confusion matrix ({len(gold)} records, accuracy {accuracy:.3f})")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
