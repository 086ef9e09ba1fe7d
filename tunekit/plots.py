"""Plots of runs (matplotlib, Agg backend: works without a display)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import TunekitError
from .history import History


def plot_history(
    history: History,
    path: str | os.PathLike,
    *,
    metric: str | None = None,
    layer_weights: list[float] | None = None,
) -> str:
    """Learning curve: train and eval loss per epoch, and one metric on a second panel;
    with *layer_weights* (a learned layer mix) a bar chart of them on a last panel."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    if not len(history):
        raise TunekitError("the history is empty: there is nothing to plot yet")
    epochs = history.column("epoch")
    skip = {"epoch", "step", "train_loss", "eval_loss", "seconds"}
    if metric is None:
        metric = next((c for c in history.columns if c not in skip), None)
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
