"""Serve an ONNX export through onnxruntime: ``tunekit.load(dir)`` on an export directory.

An :class:`OnnxRun` is a :class:`tunekit.Run` whose network is an ``onnxruntime``
session: ``predict()`` and ``evaluate()`` give what the bundle's run gives (the same task
code encodes the records, batches them longest first and decodes the outputs; only the
network differs). It needs ``onnxruntime``, ``transformers`` (the tokenizer), ``torch``
(tunekit's tasks batch with it) and the task's plugin, and never imports peft,
accelerate or datasets.

Loading verifies every file against ``manifest.json`` and never runs code from the
directory (the ``postprocess.py`` copy there is for users serving the export without
tunekit; tunekit runs its own :mod:`tunekit.onnx_postprocess`).

Example::

    serving = tunekit.load("out/onnx")               # an OnnxRun
    serving.predict(["what a wonderful film", "a dull mess"])
    tunekit.load("out/bundle", backend="onnx")        # export a bundle on the fly, then serve
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from .errors import BundleError, ExportError, TunekitError
from .run import RECORDS_PER_CHUNK, Run

FORMAT = "tunekit-onnx"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
META_FILE = "tunekit_onnx.json"
MODEL_FILE = "model.onnx"


def is_onnx_export(path: str | os.PathLike) -> bool:
    """Whether *path* holds an ONNX export (its manifest says ``tunekit-onnx``)."""
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def graph_batch(task: Any, batch: Mapping[str, Any], tokenizer: Any) -> dict[str, torch.Tensor]:
    """The graph's inputs from a collated *batch*: ``task.export_batch(batch, tokenizer)``
    where the task defines it, else every tensor of the batch except ``labels``."""
    hook = getattr(task, "export_batch", None)
    chosen = (
        hook(batch, tokenizer)
        if callable(hook)
        else {k: v for k, v in batch.items() if k != "labels"}
    )
    return {k: v for k, v in chosen.items() if isinstance(v, torch.Tensor)}


def session_for(path: str | os.PathLike, *, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for *path* on the CPU. *threads* (default: the
    usable CPUs, or ``OMP_NUM_THREADS`` when set) intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is None:
        from .hardware import usable_cpus

        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else usable_cpus()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(
    session: Any, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]
) -> dict[str, np.ndarray]:
    """Run *session* on the *feeds* it declares (others are ignored); returns *outputs*."""
    declared = {i.name for i in session.get_inputs()}
    missing = declared - set(feeds)
    if missing:
        raise ExportError(
            f"the ONNX graph needs input(s) {sorted(missing)} that this batch does not have; the export "
            f"does not fit this task's batches (export again with this tunekit)"
        )
    values = session.run(list(outputs), {k: v for k, v in feeds.items() if k in declared})
    return dict(zip(outputs, values))


def verify_export(path: str | os.PathLike) -> dict[str, Any]:
    """Check an export's manifest against its files; returns ``tunekit_onnx.json``.

    Raises :class:`BundleError` for a missing, altered, extra or unsafe file, a link, or
    an export from a newer tunekit.
    """
    root = Path(path)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        files: dict[str, str] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(
            f"{root} is not a complete ONNX export: {MANIFEST} is missing or unreadable ({exc}); export again"
        ) from exc
    if manifest.get("format") != FORMAT:
        raise BundleError(
            f"{root} is not a tunekit ONNX export (format {manifest.get('format')!r})"
        )
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise BundleError(
            f"ONNX export {root} has format version {manifest['format_version']}, newer than this tunekit "
            f"reads; upgrade tunekit"
        )
    if any(p.is_symlink() for p in root.rglob("*")):
        raise BundleError(f"ONNX export {root} contains symbolic links; copy it with cp -rL")
    for name, digest in files.items():
        pure = PurePosixPath(name)
        if not name or pure.is_absolute() or ".." in pure.parts:
            raise BundleError(f"ONNX export {root}: manifest names an unsafe path {name!r}")
        file = root / pure
        if not file.is_file():
            raise BundleError(
                f"ONNX export {root} is partial: {name} is missing; copy the whole directory"
            )
        sha = hashlib.sha256()
        with file.open("rb") as fh:
            for block in iter(functools.partial(fh.read, 1 << 20), b""):
                sha.update(block)
        if sha.hexdigest() != digest:
            raise BundleError(
                f"ONNX export {root} was altered: {name} does not match its sha256 in {MANIFEST}; export again"
            )
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {MANIFEST}
    extra = sorted(present - set(files))
    if extra:
        raise BundleError(
            f"ONNX export {root} has files not in its manifest: {', '.join(extra[:5])}; remove them or export again"
        )
    return json.loads((root / META_FILE).read_text())


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
        self._post = info.get("postprocess")

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
        from .plugins import get_state

        root = Path(path)
        info = verify_export(root) if verify else json.loads((root / META_FILE).read_text())
        try:
            task_cls = get_state().tasks.get(info["task"]["name"])
        except TunekitError as exc:
            raise BundleError(
                f"ONNX export {root} needs a plugin that is not installed: {exc} Install the plugin that "
                f"provides it (`tunekit plugins` lists what is installed)."
            ) from exc
        task = task_cls(
            build_config(task_cls.Config, info["task"]["config"], owner=f"task {task_cls.name!r}")
        )
        task.load_state(info["task"]["state"])
        training = build_config(
            TrainingConfig, {**info["training"], "resume": False}, owner="training"
        )
        return cls(
            session=session_for(root / model_file, threads=threads),
            info=info,
            path=root,
            task=task,
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
        predictions: list[Any] = []
        size = batch_size or self.training.eval_batch_size or 2 * self.training.batch_size
        for start in range(0, len(records), RECORDS_PER_CHUNK):
            chunk = records[start : start + RECORDS_PER_CHUNK]
            features = self.task.encode(
                chunk, self.tokenizer, max_length=self.training.max_length, with_labels=with_labels
            )
            outputs = self._outputs(features, size)
            predictions += self.task.decode(outputs, features, chunk, **options)
        return predictions, None

    def _outputs(self, features: Sequence[Any], batch_size: int) -> list[dict[str, np.ndarray]]:
        """Per-feature ``task.batch_outputs`` in feature order (longest batched first)."""
        names = self.info["outputs"]
        order = sorted(range(len(features)), key=lambda i: -len(features[i].get("input_ids", ())))
        results: list[Any] = [None] * len(features)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self.task.collate([features[i] for i in idx], self.tokenizer)
            feeds = {k: v.numpy() for k, v in graph_batch(self.task, batch, self.tokenizer).items()}
            raw = run_session(self.session, feeds, names)
            if self._post:
                raw.update(self._postprocess(raw, batch))
            outputs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items()}
            with torch.inference_mode():
                kept = self.task.batch_outputs(outputs, batch)
            cpu = {
                k: (v.float() if v.is_floating_point() else v).cpu().numpy()
                for k, v in kept.items()
            }
            for j, i in enumerate(idx):
                results[i] = {k: v[j] for k, v in cpu.items()}
        return results

    def _postprocess(self, raw: Mapping[str, np.ndarray], batch: Mapping[str, Any]):
        from .onnx_postprocess import POSTPROCESSORS

        post = self._post
        arrays = {k: np.asarray(v) for k, v in post["arrays"].items()}
        if post["name"] == "crf-viterbi":
            extra = {
                key: batch[key].numpy() if key in batch else None
                for key in ("word_starts", "sentence_start", "sentence_end")
            }
            return {"tags": POSTPROCESSORS["crf-viterbi"](raw["logits"], arrays, **extra)}
        raise ExportError(f"unknown ONNX post-processing {post['name']!r}; upgrade tunekit")

    def save(self, path: str | os.PathLike, **options: Any) -> str:
        raise ExportError(
            "an ONNX export serves predictions only; it cannot be saved as a bundle (keep the original bundle)"
        )

    def export(self, path: str | os.PathLike, **options: Any) -> str:
        raise ExportError("this run is already an ONNX export; copy its directory instead")


def load_onnx(path: str | os.PathLike, *, threads: int | None = None) -> OnnxRun:
    """Load and verify an ONNX export written by ``run.export(dir, format="onnx")``."""
    return OnnxRun.from_directory(path, threads=threads)
