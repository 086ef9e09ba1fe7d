"""Progress a person can see: a tqdm bar on a terminal, a one-line report every
half minute otherwise (CI logs, ``nohup``, captured notebook output), each finished epoch's
history row as it ends, and nothing from processes other than the main one."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

#: seconds between two one-line reports when stderr is not a terminal
EVERY_SECONDS = 30.0


def progress_mode(progress: bool | None, *, main: bool, stream: TextIO | None = None) -> str:
    """``"bar"``, ``"lines"`` or ``"off"`` for the ``progress`` option: ``True`` a bar,
    ``False`` nothing, ``None`` a bar on a terminal and one-line reports otherwise; only
    the main process (rank 0) shows progress.

    Example::

        progress_mode(None, main=True)   # 'bar' in a terminal, 'lines' when piped
    """
    if not main or progress is False:
        return "off"
    if progress:
        return "bar"
    stream = stream or sys.stderr
    return "bar" if stream.isatty() else "lines"


class Progress:
    """Steps done out of *total* shown as *mode* says (:func:`progress_mode`).

    Example::

        progress = Progress(total=600, initial=0, mode="lines", desc="training")
        progress.update(loss=0.41)          # prints a line at most every 30 s
        progress.row("epoch 1  ...")        # always printed (bar or lines)
        progress.close()
    """

    def __init__(
        self,
        *,
        total: int,
        initial: int = 0,
        mode: str,
        desc: str,
        stream: TextIO | None = None,
        every: float | None = None,
    ) -> None:
        self.total, self.done, self.mode, self.desc = total, initial, mode, desc
        self.stream = stream or sys.stderr
        self.every = EVERY_SECONDS if every is None else every
        self.start = self.last = time.monotonic()
        self.first = initial
        self.postfix: dict[str, Any] = {}
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=self.stream)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines" and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix.update(values)
        if self.bar is not None:
            self.bar.set_postfix(**values, refresh=False)

    def row(self, text: str) -> None:
        """Print one line now (a finished epoch's history row)."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        elif self.mode == "lines":
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _line(self) -> None:
        elapsed = time.monotonic() - self.start
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else None
        parts = [
            f"{self.desc}: step {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f}%)",
            f"{_duration(elapsed)} elapsed",
        ]
        if left is not None:
            parts.append(f"~{_duration(left)} left")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        print(", ".join(parts), file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_row(row: dict[str, Any], *, epochs: int) -> str:
    """A history row as one line: ``epoch 1/3  step 60  train_loss 0.5123  accuracy 0.8300  12.3 s``."""
    parts = []
    for key, value in row.items():
        if key == "epoch":
            parts.append(f"epoch {value}/{epochs}")
        elif key == "seconds":
            continue
        elif value is None:
            parts.append(f"{key} -")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.4f}")
        else:
            parts.append(f"{key} {value}")
    if "seconds" in row:
        parts.append(
            _duration(row["seconds"]) if row["seconds"] >= 60 else f"{row['seconds']:.1f} s"
        )
    return "  ".join(parts)
