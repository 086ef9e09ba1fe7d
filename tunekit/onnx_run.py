"""Serve an ONNX export through onnxruntime: ``tunekit.load(dir)`` on an export directory.

An :class:`OnnxRun` is a :class:`tunekit.Run` whose network is an ``onnxruntime``
session: ``predict()`` and ``evaluate()`` give what the bundle's run gives (the same task
code encodes the records, batches them longest first and decodes the outputs; only the
network differs). It needs ``onnxruntime``, ``transformers`` (the tokenizer), ``torch``
(tunekit's tasks batch with it) and the task's plugin, and never imports peft,
accelerate or datasets. The session-level work lives in :mod:`tunekit.onnx_runtime`.

Example::

    serving = tunekit.load("out/onnx")               # an OnnxRun
    serving.predict(["what a wonderful film", "a dull mess"])
    tunekit.load("out/bundle", backend="onnx")        # export a bundle on the fly, then serve
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ExportError
from .onnx_runtime import (
    META_FILE,
    MODEL_FILE,
    decode_records,
    session_for,
    task_from_info,
    verify_export,
)
from .run import Run


class OnnxRun(Run):
    """A run served by onnxruntime from an ONNX export (``tunekit.load(export_dir)``).

    ``predict()`` / ``evaluate()`` behave as the bundle's (``evaluate`` reports the task's
    metrics, not ``eval_loss``). ``info`` is the export's ``tunekit_onnx.json`` (parity
    and int8 figures, versions). Training-side methods (``save``, ``export``, task
    extras such as a bi-encoder's ``encode``) are not available.

    Example::

        serving = tunekit.load("out/onnx")
        serving.info["parity"]["agreement"]     # 1.0
        serving.predict("a dull, lifeless mess")
    """

    def __init__(self, *, session: Any, info: dict[str, Any], path: Path, **kwargs: Any) -> None:
        super().__init__(model=None, strategy=None, **kwargs)  # type: ignore[arg-type]
        self.session = session
        self.info = info
        self.path = path

    @classmethod
    def from_directory(
        cls,
        path: str | os.PathLike,
        *,
        verify: bool = True,
        model_file: str = MODEL_FILE,
        threads: int | None = None,
    ) -> OnnxRun:
        """Load the export at *path* (verifying its manifest unless *verify* is false)."""
        from transformers import AutoTokenizer

        from .config import TrainingConfig, build_config

        root = Path(path)
        info = verify_export(root) if verify else json.loads((root / META_FILE).read_text())
        training = build_config(
            TrainingConfig, {**info["training"], "resume": False}, owner="training"
        )
        return cls(
            session=session_for(root / model_file, threads=threads),
            info=info,
            path=root,
            task=task_from_info(info, where=root),
            tokenizer=AutoTokenizer.from_pretrained(root / "tokenizer", trust_remote_code=False),
            training=training,
            backbone=info.get("backbone") or {},
            metrics=info.get("metrics"),
        )

    def __repr__(self) -> str:
        quant = (self.info.get("quantization") or {}).get("kind", "fp32")
        return f"<tunekit.OnnxRun task={self.task.name!r} {quant} path={str(self.path)!r}>"

    @property
    def layer_weights(self) -> None:
        return None

    def _decode(
        self, records, *, with_labels: bool, batch_size: int | None, options: dict[str, Any]
    ):
        size = batch_size or self.training.eval_batch_size or 2 * self.training.batch_size
        predictions = decode_records(
            self.session,
            self.info,
            self.task,
            self.tokenizer,
            records,
            max_length=self.training.max_length,
            batch_size=size,
            with_labels=with_labels,
            options=options,
        )
        return predictions, None

    def save(self, path: str | os.PathLike, **options: Any) -> str:
        raise ExportError(
            "an ONNX export serves predictions only; it cannot be saved as a bundle (keep the original bundle)"
        )

    def export(self, path: str | os.PathLike, **options: Any) -> str:
        raise ExportError("this run is already an ONNX export; copy its directory instead")


def load_onnx(path: str | os.PathLike, *, threads: int | None = None) -> OnnxRun:
    """Load and verify an ONNX export written by ``run.export(dir, format="onnx")``."""
    return OnnxRun.from_directory(path, threads=threads)
