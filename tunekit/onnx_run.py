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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DataError, ExportError
from .onnx_runtime import (
    META_FILE,
    MODEL_FILE,
    SERVING_BATCH_SIZE,
    decode_records,
    embed_texts,
    serving_threads,
    session_for,
    task_from_info,
    verify_export,
)
from .run import Run, embedding_similarity


class OnnxRun(Run):
    """A run served by onnxruntime from an ONNX export (``tunekit.load(export_dir)``).

    ``predict()`` / ``evaluate()`` behave as the bundle's (``evaluate`` reports the task's
    metrics, not ``eval_loss``). ``info`` is the export's ``tunekit_onnx.json`` (parity
    and int8 figures, versions). A bi-encoder's export also has :meth:`encode` and
    :meth:`similarity` (through its embedder graph), as its ``PairRun`` has. Training-side
    methods (``save``, ``export``, other task extras) are not available.

    Serving: ``predict()`` cuts the texts into batches of ``SERVING_BATCH_SIZE`` (8) unless
    ``batch_size=`` says otherwise, and runs ``workers`` of them side by side, each on
    ``threads`` intra-op threads (:func:`tunekit.onnx_runtime.serving_threads`; default one
    single-threaded run per CPU). ``workers=1`` puts every CPU on one batch (the lowest
    latency for a single request); ``spin=True`` lets idle threads busy-wait.

    Example::

        serving = tunekit.load("out/onnx")
        serving.info["parity"]["agreement"]     # 1.0
        serving.predict("a dull, lifeless mess")
    """

    def __init__(
        self,
        *,
        session: Any,
        info: dict[str, Any],
        path: Path,
        threads: int | None = None,
        workers: int = 1,
        spin: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=None, strategy=None, **kwargs)  # type: ignore[arg-type]
        self.session = session
        self.info = info
        self.path = path
        self.workers = workers
        self.threads = threads
        self.spin = spin
        self._embedder: Any = None

    @classmethod
    def from_directory(
        cls,
        path: str | os.PathLike,
        *,
        verify: bool = True,
        model_file: str = MODEL_FILE,
        threads: int | None = None,
        workers: int | None = None,
        spin: bool = False,
    ) -> OnnxRun:
        """Load the export at *path* (verifying its manifest unless *verify* is false);
        *workers*, *threads*, *spin*: how it serves (the class's docstring)."""
        from transformers import AutoTokenizer

        from .config import TrainingConfig, build_config

        root = Path(path)
        info = verify_export(root) if verify else json.loads((root / META_FILE).read_text())
        training = build_config(
            TrainingConfig, {**info["training"], "resume": False}, owner="training"
        )
        workers, threads = serving_threads(workers, threads)
        served = cls(
            session=session_for(root / model_file, threads=threads, spin=spin),
            info=info,
            path=root,
            threads=threads,
            workers=workers,
            spin=spin,
            task=task_from_info(info, where=root),
            tokenizer=AutoTokenizer.from_pretrained(root / "tokenizer", trust_remote_code=False),
            training=training,
            backbone=info.get("backbone") or {},
            metrics=info.get("metrics"),
        )
        embedder = info.get("embedder")
        if embedder:  # opened now: tunekit.load(bundle, backend="onnx") deletes its export
            served._embedder = session_for(root / embedder["file"], threads=threads, spin=spin)
        return served

    def __repr__(self) -> str:
        quant = (self.info.get("quantization") or {}).get("kind", "fp32")
        return f"<tunekit.OnnxRun task={self.task.name!r} {quant} path={str(self.path)!r}>"

    @property
    def layer_weights(self) -> None:
        return None

    def _decode(
        self, records, *, with_labels: bool, batch_size: int | None, options: dict[str, Any]
    ):
        predictions = decode_records(
            self.session,
            self.info,
            self.task,
            self.tokenizer,
            records,
            max_length=self.training.max_length,
            batch_size=batch_size or SERVING_BATCH_SIZE,
            with_labels=with_labels,
            options=options,
            workers=self.workers,
        )
        return predictions, None

    def encode(
        self, texts: str | Sequence[str], *, batch_size: int | None = None, normalize: bool = True
    ) -> np.ndarray:
        """Embeddings ``[len(texts), width]`` (float32; unit length when *normalize*) from
        a bi-encoder export's embedder graph, as ``PairRun.encode`` gives them; a single
        string gives one vector ``[width]``.

        Example::

            serving = tunekit.load("out/bi-encoder-onnx")
            serving.encode(["how old are you", "what is your age"]).shape   # (2, 384)
        """
        embedder = self.info.get("embedder")
        if not embedder:
            raise ConfigError(
                f"encode() needs a bi-encoder export with an embedder graph, and this {self.task.name!r} export "
                f"({self.path}) has none: a cross-encoder reads both texts together (use predict(pairs)); a "
                f"bi-encoder exported by an older tunekit: export it again"
            )
        single = isinstance(texts, str)
        batch: list[str] = [texts] if isinstance(texts, str) else list(texts)
        for i, text in enumerate(batch):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"encode input {i} is empty or not a string ({text!r})")
        out = embed_texts(
            self._embedder,
            self.tokenizer,
            batch,
            max_length=self.training.max_length,
            batch_size=batch_size or SERVING_BATCH_SIZE,
            normalize=normalize,
            workers=self.workers,
        )
        return out[0] if single else out

    def similarity(
        self, a: str | Sequence[str], b: str | Sequence[str], *, batch_size: int | None = None
    ) -> Any:
        """Cosine similarity of the embeddings of *a* and *b* (``PairRun.similarity``): two
        strings give a float, two equally long lists one value per position (an array).

        Example::

            serving.similarity("how old are you", "what is your age")   # 0.93
        """
        return embedding_similarity(self.encode, a, b, batch_size=batch_size)

    def save(self, path: str | os.PathLike, **options: Any) -> str:
        raise ExportError(
            "an ONNX export serves predictions only; it cannot be saved as a bundle (keep the original bundle)"
        )

    def export(self, path: str | os.PathLike, **options: Any) -> str:
        raise ExportError("this run is already an ONNX export; copy its directory instead")


def load_onnx(
    path: str | os.PathLike,
    *,
    threads: int | None = None,
    workers: int | None = None,
    spin: bool = False,
) -> OnnxRun:
    """Load and verify an ONNX export written by ``run.export(dir, format="onnx")``.

    *workers* batches run side by side on *threads* intra-op threads each (default: one
    single-threaded run per CPU; ``workers=1``: one run on every CPU, the lowest latency
    for one request); *spin* lets idle onnxruntime threads busy-wait (:class:`OnnxRun`).

    Example::

        serving = load_onnx("out/onnx")                      # 2 runs side by side on 2 CPUs
        latency = load_onnx("out/onnx", workers=1, spin=True)
    """
    return OnnxRun.from_directory(path, threads=threads, workers=workers, spin=spin)
