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

from .errors import BundleError, ConfigError, ExportError, TunekitError
from .inference import RECORDS_PER_CHUNK

FORMAT = "tunekit-onnx"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
META_FILE = "tunekit_onnx.json"
MODEL_FILE = "model.onnx"
#: texts an export serves per onnxruntime run by default (``OnnxRun.predict``, the gates)
SERVING_BATCH_SIZE = 8
#: onnxruntime graph optimizers :func:`session_for` turns off
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


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


def default_threads() -> int:
    """The CPUs onnxruntime may use: ``OMP_NUM_THREADS`` when set, else the usable CPUs."""
    from .hardware import usable_cpus

    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else usable_cpus()


def serving_threads(workers: int | None = None, threads: int | None = None) -> tuple[int, int]:
    """``(workers, threads)``: how many batches an export serves side by side and how many
    intra-op threads each onnxruntime run gets. Defaults: one single-threaded run per CPU
    (:func:`default_threads`), since an encoder's small serving batches keep one thread
    busy but not two (docs/export.md has the figures); ``workers=1`` gives the one run
    every CPU (the lowest latency for a single request); *threads* alone divides the CPUs
    among runs of that many threads.

    Example::

        serving_threads()                 # (2, 1) on 2 CPUs
        serving_threads(workers=1)        # (1, 2)
    """
    for name, value in (("workers", workers), ("threads", threads)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(f"{name}={value!r} must be a whole number >= 1 (or None: the CPUs)")
    cpus = default_threads()
    if workers is None:
        workers = max(1, cpus // threads) if threads else cpus
    if threads is None:
        threads = max(1, cpus // workers)
    return workers, threads


def session_for(path: str | os.PathLike, *, threads: int | None = None, spin: bool = False) -> Any:
    """An ``onnxruntime.InferenceSession`` for *path* on the CPU. *threads* (default:
    :func:`default_threads`) intra-op threads. *spin*: let idle intra-op threads busy-wait
    for work (onnxruntime's default); off by default because on a shared, loaded CPU the
    spinning threads take cores from the ones working (measured 1.1-1.6x faster without
    it, docs/export.md). onnxruntime's ``SkipLayerNormFusion`` is disabled: an export
    keeps its residual adds and ``LayerNormalization`` apart (the export's fusion step
    skips them too), which onnxruntime's CPU kernels run faster than the fused operator.

    Example::

        session = session_for("out/onnx/model.onnx", threads=2)
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or default_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(
        str(path),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(DISABLED_OPTIMIZERS),
    )


def map_session_batches(
    session: Any,
    feeds: Sequence[Mapping[str, np.ndarray]],
    outputs: Sequence[str],
    *,
    workers: int = 1,
) -> list[dict[str, np.ndarray]]:
    """:func:`run_session` on every batch of *feeds*, in order, with up to *workers* runs
    side by side (threads: onnxruntime releases the GIL while it runs a graph; one
    session serves concurrent runs). An error in any run is raised here.

    Example::

        outs = map_session_batches(session, [feeds_a, feeds_b], ["logits"], workers=2)
    """
    if workers <= 1 or len(feeds) <= 1:
        return [run_session(session, f, outputs) for f in feeds]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(workers, len(feeds)), thread_name_prefix="tunekit-onnx") as pool:
        return list(pool.map(lambda f: run_session(session, f, outputs), feeds))


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
    workers: int = 1,
) -> list[Any]:
    """*records* encoded by *task*, run through the ONNX *session* (*workers* batches side
    by side: :func:`map_session_batches`) and decoded: what ``predict()`` / ``evaluate()``
    of an :class:`~tunekit.onnx_run.OnnxRun` return, and what the export's gates compare
    with the run's own predictions."""
    predictions: list[Any] = []
    for start in range(0, len(records), RECORDS_PER_CHUNK):
        chunk = records[start : start + RECORDS_PER_CHUNK]
        features = task.encode(chunk, tokenizer, max_length=max_length, with_labels=with_labels)
        outputs = session_outputs(
            session, info, task, tokenizer, features, batch_size, workers=workers
        )
        predictions += task.decode(outputs, features, chunk, **options)
    return predictions


def longest_first(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of *lengths* sorted longest first, cut into batches of *batch_size*."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def session_outputs(
    session: Any,
    info: Mapping[str, Any],
    task: Any,
    tokenizer: Any,
    features: Sequence[Any],
    batch_size: int,
    *,
    workers: int = 1,
) -> list[dict[str, np.ndarray]]:
    """Per-feature ``task.batch_outputs`` in feature order (longest batched first; up to
    *workers* batches run side by side)."""
    names = info["outputs"]
    post = info.get("postprocess")
    batches = longest_first([len(f.get("input_ids", ())) for f in features], batch_size)
    collated = [task.collate([features[i] for i in idx], tokenizer) for idx in batches]
    feeds = [
        {k: v.numpy() for k, v in graph_batch(task, batch, tokenizer).items()} for batch in collated
    ]
    results: list[Any] = [None] * len(features)
    raws = map_session_batches(session, feeds, names, workers=workers)
    for idx, batch, raw in zip(batches, collated, raws):
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
    workers: int = 1,
) -> np.ndarray:
    """``[len(texts), width]`` float32 embeddings from an export's embedder graph
    (``embedder.onnx``): each text tokenized alone (truncated at *max_length*), batched
    longest first (up to *workers* batches side by side), unit length when *normalize*.

    Example::

        vectors = embed_texts(session_for("out/onnx/embedder.onnx"), tokenizer, ["a", "b"],
                              max_length=128, batch_size=64)
    """
    declared = [i.name for i in session.get_inputs()]
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    keys = [k for k in declared if k in enc]
    batches = longest_first([len(ids) for ids in enc["input_ids"]], batch_size)
    feeds = []
    for idx in batches:
        padded = tokenizer.pad({k: [enc[k][i] for i in idx] for k in keys}, return_tensors="np")
        feeds.append({k: np.asarray(padded[k], dtype=np.int64) for k in keys})
    rows: list[np.ndarray | None] = [None] * len(texts)
    for idx, out in zip(
        batches, map_session_batches(session, feeds, ["embedding"], workers=workers)
    ):
        vectors = out["embedding"].astype(np.float32)
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
