"""The per-evaluation history table of a run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

FIRST_COLUMNS = ("epoch", "step", "train_loss", "eval_loss")


class History:
    """Rows of ``{epoch, step, train_loss, eval_loss, <metrics>, seconds}``, one per evaluation.

    Prints as a table; ``to_list()`` / ``to_pandas()`` convert it.

    Example::

        print(run.history)
        #  epoch  step  train_loss  eval_loss  accuracy  macro_f1     mcc  seconds
        #      1    60      0.5123     0.4011    0.8300    0.8297  0.6601     12.3
    """

    def __init__(
        self, rows: list[dict[str, Any]] | None = None, *, info: dict[str, Any] | None = None
    ) -> None:
        self.rows: list[dict[str, Any]] = list(rows or [])
        #: run-level facts: trainable / total parameters, device, precision...
        self.info: dict[str, Any] = dict(info or {})

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))

    @property
    def columns(self) -> list[str]:
        seen: list[str] = [c for c in FIRST_COLUMNS if any(c in r for r in self.rows)]
        for row in self.rows:
            for key in row:
                if key not in seen and key != "seconds":
                    seen.append(key)
        if any("seconds" in r for r in self.rows):
            seen.append("seconds")
        return seen

    def to_list(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows]

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)

    def column(self, name: str) -> list[Any]:
        return [r.get(name) for r in self.rows]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    def __str__(self) -> str:
        cols = self.columns
        if not cols:
            return "(empty history)"
        cells = [[_fmt(r.get(c), seconds=c == "seconds") for c in cols] for r in self.rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
        return "\n".join(lines)

    __repr__ = __str__


def _fmt(value: Any, *, seconds: bool = False) -> str:
    # one format per column, whatever the value: 4 decimals for losses and metrics (1.0 is
    # "1.0000", not "1"), 1 decimal for seconds
    if value is None:
        return "-"
    if isinstance(value, float) or (seconds and isinstance(value, int)):
        return f"{value:.1f}" if seconds else f"{value:.4f}"
    return str(value)
