"""Run an ONNX export's graph through onnxruntime: the session-level functions (load and
verify an export directory, open a session, feed it tunekit batches, decode records through
it) that the export's gates and :class:`tunekit.onnx_run.OnnxRun` share.

Nothing here imports :mod:`tunekit.run`, so the exporter (which :meth:`tunekit.Run.export`
reaches) can verify a graph without a cycle back to ``Run``. It needs ``onnxruntime``,
``transformers`` (the tokenizer), ``torch`` (tunekit's tasks batch with it) and the task's
plugin, and never imports peft, accelerate or datasets.

Loading verifies every file against ``manifest.json`` and never runs code from the
directory (the ``postprocess.py`` copy there is for users serving the export without
tunekit; tunekit runs its own :mod:`tunekit.onnx_postprocess`).

Example::

    info = verify_export("out/onnx")
    session = session_for("out/onnx/model.onnx")
    task = task_from_info(info)
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
from .inference import RECORDS_PER_CHUNK

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


def session_for(path: str | os.PathLike, *, threads: int | None = None, spin: bool = False) -> Any:
    """An ``onnxruntime.InferenceSession`` for *path* on the CPU. *threads* (default: the
    usable CPUs, or ``OMP_NUM_THREADS`` when set) intra-op threads. *spin*: let idle
    intra-op threads busy-wait for work (onnxruntime's default); off by default because on
    a shared, loaded CPU the spinning threads take cores from the ones working (measured
    1.1-1.6x faster without it, docs/export.md), while the batches tunekit feeds are large
    enough that waking threads costs little.

    Example::

        session = session_for("out/onnx/model.onnx", threads=2)
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is None:
        from .hardware import usable_cpus

        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else usable_cpus()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
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


def task_from_info(info: Mapping[str, Any], *, where: Any = "") -> Any:
    """The export's task, rebuilt from ``tunekit_onnx.json`` (config and state) through the
    installed plugin that provides it (*where*: the export directory, for the error)."""
    from .config import build_config
    from .plugins import get_state

    try:
        task_cls = get_state().tasks.get(info["task"]["name"])
    except TunekitError as exc:
        raise BundleError(
            f"ONNX export {where} needs a plugin that is not installed: {exc} Install the plugin that "
            f"provides it (`tunekit plugins` lists what is installed)."
        ) from exc
    task = task_cls(
        build_config(task_cls.Config, info["task"]["config"], owner=f"task {task_cls.name!r}")
    )
    task.load_state(info["task"]["state"])
    return task


def decode_records(
    session: Any,
    info: Mapping[str, Any],
    task: Any,
    tokenizer: Any,
    records: Sequence[Any],
    *,
    max_length: int,
    batch_size: int,
    with_labels: bool,
    options: Mapping[str, Any],
) -> list[Any]:
    """*records* encoded by *task*, run through the ONNX *session* and decoded: what
    ``predict()`` / ``evaluate()`` of an :class:`~tunekit.onnx_run.OnnxRun` return, and
    what the export's gates compare with the run's own predictions."""
    predictions: list[Any] = []
    for start in range(0, len(records), RECORDS_PER_CHUNK):
        chunk = records[start : start + RECORDS_PER_CHUNK]
        features = task.encode(chunk, tokenizer, max_length=max_length, with_labels=with_labels)
        outputs = session_outputs(session, info, task, tokenizer, features, batch_size)
        predictions += task.decode(outputs, features, chunk, **options)
    return predictions


def session_outputs(
    session: Any,
    info: Mapping[str, Any],
    task: Any,
    tokenizer: Any,
    features: Sequence[Any],
    batch_size: int,
) -> list[dict[str, np.ndarray]]:
    """Per-feature ``task.batch_outputs`` in feature order (longest batched first)."""
    names = info["outputs"]
    post = info.get("postprocess")
    order = sorted(range(len(features)), key=lambda i: -len(features[i].get("input_ids", ())))
    results: list[Any] = [None] * len(features)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = task.collate([features[i] for i in idx], tokenizer)
        feeds = {k: v.numpy() for k, v in graph_batch(task, batch, tokenizer).items()}
        raw = run_session(session, feeds, names)
        if post:
            raw.update(_postprocess(post, raw, batch))
        outputs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items()}
        with torch.inference_mode():
            kept = task.batch_outputs(outputs, batch)
        cpu = {
            k: (v.float() if v.is_floating_point() else v).cpu().numpy() for k, v in kept.items()
        }
        for j, i in enumerate(idx):
            results[i] = {k: v[j] for k, v in cpu.items()}
    return results


def embed_texts(
    session: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int,
    normalize: bool = True,
) -> np.ndarray:
    """``[len(texts), width]`` float32 embeddings from an export's embedder graph
    (``embedder.onnx``): each text tokenized alone (truncated at *max_length*), batched
    longest first, unit length when *normalize*.

    Example::

        vectors = embed_texts(session_for("out/onnx/embedder.onnx"), tokenizer, ["a", "b"],
                              max_length=128, batch_size=64)
    """
    declared = [i.name for i in session.get_inputs()]
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    keys = [k for k in declared if k in enc]
    order = sorted(range(len(texts)), key=lambda i: -len(enc["input_ids"][i]))
    rows: list[np.ndarray | None] = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        padded = tokenizer.pad({k: [enc[k][i] for i in idx] for k in keys}, return_tensors="np")
        feeds = {k: np.asarray(padded[k], dtype=np.int64) for k in keys}
        vectors = run_session(session, feeds, ["embedding"])["embedding"].astype(np.float32)
        if normalize:
            norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)  # torch.nn.functional.normalize's eps
        for j, i in enumerate(idx):
            rows[i] = vectors[j]
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def _postprocess(post: Mapping[str, Any], raw: Mapping[str, np.ndarray], batch: Mapping[str, Any]):
    from .onnx_postprocess import POSTPROCESSORS

    arrays = {k: np.asarray(v) for k, v in post["arrays"].items()}
    if post["name"] == "crf-viterbi":
        extra = {
            key: batch[key].numpy() if key in batch else None
            for key in ("word_starts", "sentence_start", "sentence_end")
        }
        return {"tags": POSTPROCESSORS["crf-viterbi"](raw["logits"], arrays, **extra)}
    raise ExportError(f"unknown ONNX post-processing {post['name']!r}; upgrade tunekit")
