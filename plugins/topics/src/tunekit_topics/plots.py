"""Topic plots (matplotlib, Agg backend): the 2D document map and the top-words bar chart."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_topic_map(
    coords: np.ndarray,
    topics: Sequence[int],
    labels: dict[int, str],
    path: str | os.PathLike,
    *,
    title: str = "Documents by topic",
) -> str:
    """Scatter of the documents' 2D coordinates coloured by topic (outliers grey), each
    topic's label written at the centroid of its documents."""
    plt = _pyplot()
    topics = np.asarray(topics)
    fig, ax = plt.subplots(figsize=(10, 8))
    outliers = topics == -1
    if outliers.any():
        ax.scatter(
            coords[outliers, 0],
            coords[outliers, 1],
            s=6,
            c="#cccccc",
            alpha=0.6,
            label="-1 (outliers)",
        )
    ids = [t for t in sorted(set(topics.tolist())) if t != -1]
    cmap = plt.get_cmap("tab20")
    for i, t in enumerate(ids):
        pts = coords[topics == t]
        ax.scatter(pts[:, 0], pts[:, 1], s=8, color=cmap(i % 20), alpha=0.75)
    for i, t in enumerate(ids):
        cx, cy = coords[topics == t].mean(0)
        ax.annotate(
            labels.get(t, str(t)),
            (cx, cy),
            ha="center",
            va="center",
            fontsize=8,
            weight="bold",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": cmap(i % 20), "alpha": 0.85},
        )
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def plot_topic_barchart(
    topics: Sequence[tuple[int, list[tuple[str, float]]]],
    path: str | os.PathLike,
    *,
    columns: int = 4,
) -> str:
    """One horizontal bar chart of c-TF-IDF scores per topic (its top words)."""
    plt = _pyplot()
    n = max(len(topics), 1)
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    cmap = plt.get_cmap("tab20")
    for i, (topic, words) in enumerate(topics):
        ax = axes[i // cols][i % cols]
        names = [w for w, _ in words][::-1]
        scores = [s for _, s in words][::-1]
        ax.barh(names, scores, color=cmap(i % 20))
        ax.set_title(f"Topic {topic}", fontsize=10)
        ax.tick_params(labelsize=8)
    for j in range(len(topics), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
