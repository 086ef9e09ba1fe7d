"""``ordinal``: predict an ordered rating (1-5 stars, low/mid/high) from a text.

The head gives K-1 cumulative logits ``P(rating > level_k)`` for K levels (CORAL): the loss
is binary cross-entropy on them; the prediction is the number of thresholds passed. Unlike
regression it stays on the levels; unlike classification it knows 4 is closer to 5 than 1.
"""

from typing import Any

import attrs
import numpy as np
import torch.nn.functional as F

import tunekit
from tunekit.data import find_column, read_table
from tunekit.head import MLPHead
from tunekit.tasks.classify import LABEL_COLUMNS, TEXT_COLUMNS


@attrs.frozen(kw_only=True)
class OrdinalConfig:
    """Options of ``ordinal``: ``text_column`` / ``label_column`` (auto-detected), ``hidden``
    (MLP layer sizes; ``[]``: linear), ``pooling`` (``mean`` | ``cls`` | ``max``)."""

    text_column: str | None = None
    label_column: str | None = None
    hidden: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    pooling: str = "mean"


class OrdinalTask(tunekit.Task):
    """Ordinal regression on single texts; labels are integers (``1``..``5``)."""

    name, aliases = "ordinal", ("rating",)
    description = "ordered ratings (stars) from texts: cumulative logits, MAE"
    Config = OrdinalConfig
    default_metric, greater_is_better = "mae", False

    def __init__(self, config: OrdinalConfig | None = None) -> None:
        super().__init__(config)
        self.levels: list[int] = []

    def read(self, source: Any, *, name: str = "data") -> list[dict]:
        rows = read_table(source, name=name, tuple_columns=("text", "label"))
        cfg, cols = self.config, list(rows[0])
        text = find_column(
            cols, cfg.text_column, TEXT_COLUMNS, role="text", name=name, option="text_column"
        )
        label = find_column(
            cols, cfg.label_column, LABEL_COLUMNS, role="label", name=name, option="label_column"
        )
        records = []
        for i, row in enumerate(rows):
            value = row[label]
            if (
                not isinstance(row[text], str)
                or isinstance(value, bool)
                or not float(value).is_integer()
            ):
                raise tunekit.DataError(
                    f"{name} record {i}: needs a text and an integer rating, got {row!r:.80}"
                )
            records.append({"text": row[text], "label": int(value)})
        return records

    def setup(self, records: list[dict]) -> None:
        ratings = [r["label"] for r in records]
        self.levels = list(range(min(ratings), max(ratings) + 1))
        if len(self.levels) < 2:
            raise tunekit.DataError(
                f"all ratings are {ratings[0]}; ordinal regression needs at least two levels"
            )

    def parse_inputs(self, inputs: Any) -> list[dict]:
        inputs = [inputs] if isinstance(inputs, str) else inputs
        return [{"text": x["text"] if isinstance(x, dict) else x} for x in inputs]

    def encode(self, records, tokenizer, *, max_length: int, with_labels: bool) -> list[dict]:
        enc = tokenizer([r["text"] for r in records], truncation=True, max_length=max_length)
        features = []
        for i, record in enumerate(records):
            feat = {k: enc[k][i] for k in enc} | {"example_index": i}
            if with_labels:  # cumulative targets: [rating > level_0, rating > level_1, ...]
                feat["labels"] = [float(record["label"] > lv) for lv in self.levels[:-1]]
            features.append(feat)
        return features

    def build_head(self, backbone: Any) -> tunekit.Head:
        cfg = self.config
        return MLPHead(
            backbone.hidden_size, len(self.levels) - 1, hidden=cfg.hidden, pooling=cfg.pooling
        )

    def loss(self, outputs, batch):
        return F.binary_cross_entropy_with_logits(
            outputs["logits"].float(), batch["labels"].float()
        )

    def decode(self, outputs, features, records, **options: Any) -> list[dict]:
        predictions: list[dict] = [{}] * len(records)
        for out, feat in zip(outputs, features):  # one feature per record
            above = 1 / (1 + np.exp(-out["logits"]))  # P(rating > level_k)
            cum = np.concatenate([[1.0], np.minimum.accumulate(above), [0.0]])
            predictions[feat["example_index"]] = {
                "label": self.levels[int((above > 0.5).sum())],
                "expected": self.levels[0] + float(above.sum()),
                "probabilities": {
                    lv: float(cum[k] - cum[k + 1]) for k, lv in enumerate(self.levels)
                },
            }
        return predictions

    def metrics(self, predictions, records) -> dict[str, float]:
        gold = np.array([r["label"] for r in records])
        pred = np.array([p["label"] for p in predictions])
        return {"mae": float(np.abs(gold - pred).mean()), "accuracy": float((gold == pred).mean())}

    def state(self) -> dict[str, Any]:
        return {"levels": self.levels}

    def load_state(self, state) -> None:
        self.levels = list(state["levels"])
