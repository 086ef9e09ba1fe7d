"""Label schemas: the ordered labels a task learned, and their id <-> label maps."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import attrs

from .errors import DataError

LabelKind = Literal["single_label", "multi_label", "regression"]


def _labels_tuple(value: Iterable[Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@attrs.frozen(kw_only=True)
class LabelSchema:
    """Ordered labels of a task and how targets are shaped.

    Example::

        >>> schema = LabelSchema.from_values(["pos", "neg", "pos"])
        >>> schema.labels, schema.id_of("pos")
        (('neg', 'pos'), 1)
    """

    kind: LabelKind = "single_label"
    labels: tuple[str, ...] = attrs.field(default=(), converter=_labels_tuple)
    #: For regression: the (min, max) of the training targets, used to normalise them.
    value_range: tuple[float, float] | None = None

    def __attrs_post_init__(self) -> None:
        if self.kind not in ("single_label", "multi_label", "regression"):
            raise ValueError(f"unknown label kind {self.kind!r}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"duplicate labels in {self.labels}")

    @classmethod
    def from_values(cls, values: Iterable[Any], *, kind: LabelKind = "single_label") -> LabelSchema:
        """Build a schema from training targets (sorted labels, so the order is reproducible)."""
        values = list(values)
        if kind == "regression":
            floats = [float(v) for v in values]
            return cls(kind=kind, value_range=(min(floats), max(floats)))
        if kind == "multi_label":
            flat = {str(v) for row in values for v in row}
            return cls(kind=kind, labels=sorted(flat, key=_natural_key))
        return cls(kind=kind, labels=sorted({str(v) for v in values}, key=_natural_key))

    @property
    def num_labels(self) -> int:
        return 1 if self.kind == "regression" else len(self.labels)

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def id_of(self, label: Any, *, where: str = "") -> int:
        """The id of *label*; a label the model never saw is a :class:`DataError`."""
        try:
            return self.label2id[str(label)]
        except KeyError:
            raise DataError(
                f"label {label!r}{' ' + where if where else ''} was not seen in the training data; "
                f"known labels: {', '.join(self.labels)}. Fix the label or add examples of it "
                f"to the training data."
            ) from None

    def label_of(self, index: int) -> str:
        return self.labels[index]

    def encode_multi(self, labels: Sequence[Any], *, where: str = "") -> list[float]:
        target = [0.0] * len(self.labels)
        for label in labels:
            target[self.id_of(label, where=where)] = 1.0
        return target

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "labels": list(self.labels),
            "value_range": list(self.value_range) if self.value_range else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSchema:
        vr = data.get("value_range")
        return cls(
            kind=data["kind"], labels=data.get("labels", ()), value_range=tuple(vr) if vr else None
        )


def _natural_key(label: str) -> tuple[int, float | str]:
    # Integer-like labels sort numerically ("2" < "10"); everything else alphabetically.
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)
