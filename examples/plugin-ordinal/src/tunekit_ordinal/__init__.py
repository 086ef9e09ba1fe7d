"""tunekit-ordinal: an example third-party plugin, ordinal regression (docs/plugins.md)."""

from typing import Any

import attrs
import numpy as np
import torch.nn.functional as F

import tunekit
from tunekit.plugin import DataError, MLPHead, Task, one_of, read_columns, text_inputs


@attrs.frozen(kw_only=True)
class OrdinalConfig:
    """``text_column`` / ``label_column`` (auto-detected) and ``pooling`` of the head."""

    text_column: str | None = None
    label_column: str | None = None
    pooling: str = attrs.field(default="mean", validator=one_of("mean", "cls", "max"))


class OrdinalTask(Task):
    """Ordinal regression on single texts; labels are integers (``1``..``5``)."""

    name, aliases, Config = "ordinal", ("rating",), OrdinalConfig
    description = "ordered ratings (stars) from texts: cumulative logits, MAE"
    default_metric, greater_is_better = "mae", False
    levels: list[int] = []

    def read(self, source: Any, *, name: str = "data") -> list[dict]:
        cfg = self.config
        records = read_columns(source, name=name, text=cfg.text_column, label=cfg.label_column)
        for i, r in enumerate(records):
            if isinstance(r["label"], bool) or not float(r["label"]).is_integer():
                raise DataError(f"{name} record {i}: rating {r['label']!r} is not an integer")
        return [{"text": r["text"], "label": int(r["label"])} for r in records]

    def setup(self, records: list[dict]) -> None:
        ratings = [r["label"] for r in records]
        self.levels = list(range(min(ratings), max(ratings) + 1))
        if len(self.levels) < 2:
            raise DataError(f"all ratings are {ratings[0]}; ordinal regression needs two levels")

    def parse_inputs(self, inputs: Any) -> list[dict]:
        return text_inputs(inputs)

    def encode(self, records, tokenizer, *, max_length: int, with_labels: bool) -> list[dict]:
        enc = tokenizer([r["text"] for r in records], truncation=True, max_length=max_length)
        features = [{k: enc[k][i] for k in enc} | {"example_index": i} for i in range(len(records))]
        for feat, record in zip(features, records if with_labels else []):
            feat["labels"] = [float(record["label"] > lv) for lv in self.levels[:-1]]
        return features

    def build_head(self, backbone) -> MLPHead:
        return MLPHead(
            backbone.hidden_size, len(self.levels) - 1, hidden=(), pooling=self.config.pooling
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
            probs = {lv: float(cum[k] - cum[k + 1]) for k, lv in enumerate(self.levels)}
            predictions[feat["example_index"]] = {
                "label": max(probs, key=probs.get),  # the most probable level
                "expected": self.levels[0] + float(cum[1:-1].sum()),
                "probabilities": probs,
            }
        return predictions

    def metrics(self, predictions, records) -> dict[str, float]:
        gold, pred = (np.array([x["label"] for x in xs]) for xs in (records, predictions))
        return {"mae": float(np.abs(gold - pred).mean()), "accuracy": float((gold == pred).mean())}

    def state(self) -> dict[str, Any]:
        return {"levels": self.levels}

    def load_state(self, state) -> None:
        self.levels = list(state["levels"])


@tunekit.hookimpl
def tunekit_register_tasks(register):
    register(OrdinalTask)
