"""Export a trained run to ONNX, verified: ``run.export(dir, format="onnx")``.

What is written (into a directory that must be absent or empty, atomically)::

    model.onnx            encoder + representation + head, adapters merged (fp32, or int8
                          with quantize="int8"); inputs: the task's batch tensors
                          (input_ids, attention_mask, token_type_ids, word_starts...),
                          batch and sequence axes dynamic; outputs: the head's tensors
    tokenizer/            the tokenizer (save_pretrained layout)
    tunekit_onnx.json     task name, options and label schema, graph inputs/outputs, opset,
                          library versions, the parity (and int8) figures, post-processing
    embedder.onnx         only for a bi-encoder: one text per row → its pooled embedding
                          (what ``OnnxRun.encode`` / ``similarity`` run)
    postprocess.py        only when decoding runs outside the graph (CRF Viterbi): a numpy
                          copy of :mod:`tunekit.onnx_postprocess`
    manifest.json         sha256 of every other file

How it is built. The run's model is copied, adapters merged into the encoder (peft
``merge_and_unload`` on the copy), put in eval mode and traced by ``torch.onnx.export``
(the TorchScript exporter, ``dynamo=False``) on a batch the task itself collates from
held-out records. Nothing task-specific is needed for most tasks; two optional hooks
exist, looked up on the task:

- ``task.export_batch(batch, tokenizer) -> dict``: the graph's inputs from a collated batch (with or
  without labels). Default: every tensor but ``labels``. fill-mask turns its labels
  into the positions to score so evaluation through the graph scores the same positions.
- ``task.export_postprocess(model) -> dict | None``: ``{"name": ..., "produces": [...],
  "arrays": {...}}`` for a step that runs after the graph in numpy
  (:data:`tunekit.onnx_postprocess.POSTPROCESSORS`); the tagging task's CRF head uses it
  for Viterbi decoding.

The parity gate. The torch model and the ONNX graph run on a probe batch (random
vocabulary ids, padding and mask tokens: :func:`tunekit.taskmodel.probe_batch`) and on
held-out records (``records=`` or the run's eval split): the largest absolute difference
of any output (logits...) and the agreement of the decoded predictions are measured,
stored in ``tunekit_onnx.json`` and the export is refused (:class:`ExportError`, with the
figures) when the difference is over ``atol`` or the agreement under ``min_agreement``.
With ``quantize="int8"`` (one activation scale per token: :func:`per_token_int8`) or
``"int8-per-tensor"`` (``onnxruntime.quantization.quantize_dynamic``) the task's own
metric on the held-out labelled records is compared too, and a drop of more than
``max_drop`` points refuses the export.

Example::

    run.export("out/onnx", format="onnx", quantize="int8", records="dev.csv")
    tunekit.load("out/onnx").predict("what a wonderful film")   # through onnxruntime
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .errors import BundleError, ConfigError, ExportError
from .onnx_runtime import graph_batch

if TYPE_CHECKING:
    from .run import Run

logger = logging.getLogger("tunekit")

FORMAT = "tunekit-onnx"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
META_FILE = "tunekit_onnx.json"
MODEL_FILE = "model.onnx"
#: a bi-encoder's second graph: one text → its pooled embedding (``OnnxRun.encode``)
EMBEDDER_FILE = "embedder.onnx"
#: the inputs an embedder graph may take (what a tokenizer gives for one text)
EMBEDDER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
POSTPROCESS_FILE = "postprocess.py"
OPSET = 17
#: default tolerances of the parity gate
ATOL = 1e-3
MIN_AGREEMENT = 0.99
#: default largest drop (in points: 1 point = 0.01 of a 0-1 metric) int8 may cost
MAX_DROP = 1.0
#: held-out features whose raw outputs are compared (predictions: every record)
LOGIT_FEATURES = 256
#: ``quantize=`` values: ``int8`` (one activation scale per token: the closest to fp32,
#: ≥ 99 % label agreement on the benchmark model) and ``int8-per-tensor`` (onnxruntime's
#: ``quantize_dynamic``: one activation scale per tensor, 5-15 % faster, ~98 %;
#: docs/export.md has the figures)
QUANTIZE = ("int8", "int8-per-tensor")
METHODS = {
    "int8-per-tensor": "onnxruntime.quantization.quantize_dynamic (QInt8 weights, per channel)",
    "int8": "per-token uint8 activations x per-channel int8 weights "
    "(MatMulIntegerToFloat, or MatMulInteger unfused); "
    "fused Attention and embeddings by quantize_dynamic",
}


# ---- the graph ------------------------------------------------------------------------------
class _Graph(nn.Module):
    """The task model with positional tensor inputs and a tuple of outputs (what tracing needs)."""

    def __init__(self, model: nn.Module, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(dict(zip(self.inputs, tensors)))
        return tuple(out[name] for name in self.outputs)


class _Embedder(nn.Module):
    """One text per row → its pooled embedding ``[n, width]``, as a bi-encoder's ``encode``
    computes it: ``head.embed(model.hidden_states(batch), attention_mask)`` (unnormalized)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hidden = self.model.hidden_states(batch)
        return {"embedding": self.model.head.embed(hidden, batch.get("attention_mask")).float()}


def embedder_of(model: nn.Module) -> nn.Module | None:
    """The embedder of a model whose head embeds one text at a time (a bi-encoder head's
    ``embed(hidden, attention_mask)``), else ``None``."""
    head = getattr(model, "head", None)
    has_states = callable(getattr(model, "hidden_states", None))
    return (
        _Embedder(model).eval() if callable(getattr(head, "embed", None)) and has_states else None
    )


def exportable_model(run: Run) -> nn.Module:
    """A float32, eval-mode copy of *run*'s model with adapters merged into the encoder
    (``strategy.merged_model``; an adapter that cannot merge stays in the graph and the
    parity gate judges it) and eager attention (what the tracer exports most robustly)."""
    if getattr(run, "model", None) is None or not getattr(run.task, "supervised", True):
        raise ExportError(
            f"task {run.task.name!r} has no single network to export to ONNX (it is not trained by "
            f"tunekit's supervised loop); save a bundle instead (run.save)"
        )
    try:
        model = run.strategy.merged_model(run.model)
    except ConfigError as exc:
        logger.warning("ONNX export: %s; the adapter is exported unmerged", exc)
        model = run.model
    from .taskmodel import detached_copy

    model = detached_copy(model, run.model)
    model = model.float().cpu().eval()
    encoder = getattr(model, "encoder", None)
    setter = getattr(encoder, "set_attn_implementation", None)
    if callable(setter):
        try:
            setter("eager")
        except Exception as exc:  # an encoder without eager attention keeps its own
            logger.debug("ONNX export keeps the encoder's attention: %s", exc)
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def _postprocess_spec(run: Run, model: nn.Module) -> dict[str, Any] | None:
    hook = getattr(run.task, "export_postprocess", None)
    spec = hook(model) if callable(hook) else None
    if spec is None:
        return None
    from .onnx_postprocess import POSTPROCESSORS

    if spec.get("name") not in POSTPROCESSORS:
        raise ExportError(
            f"task {run.task.name!r} asks for ONNX post-processing {spec.get('name')!r}, which this tunekit "
            f"does not have (known: {', '.join(POSTPROCESSORS)}); upgrade tunekit"
        )
    arrays = {k: np.asarray(v).tolist() for k, v in spec.get("arrays", {}).items()}
    return {"name": spec["name"], "produces": list(spec.get("produces", ())), "arrays": arrays}


#: model types whose encoder onnxruntime's BERT fusions understand
FUSABLE = ("bert", "ernie", "roberta", "xlm-roberta", "camembert", "electra")


def _fuse(path: Path, model: nn.Module) -> dict[str, int] | None:
    """Fuse the encoder's subgraphs in place (onnxruntime's transformer optimizer, no
    runtime-specific graph optimization saved); the fused-operator counts, or ``None``
    when nothing fused (the plain graph is kept)."""
    config = getattr(getattr(model, "encoder", None), "config", None)
    if config is None or getattr(config, "model_type", None) not in FUSABLE:
        return None
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError:
        return None
    quiet = [logging.getLogger(n) for n in ("onnxruntime", "onnxruntime.transformers", "fusion")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    # onnxruntime's CPU SkipLayerNormalization is slower than the residual Add and
    # LayerNormalization it replaces (docs/export.md); session_for disables the same fusion
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    try:
        with contextlib.redirect_stdout(None):
            optimized = optimize_model(
                str(path),
                model_type="bert",
                num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size),
                optimization_options=options,
                opt_level=0,
            )
        counts = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
        if not counts.get("Attention"):
            return None
        optimized.save_model_to_file(str(path))
        return counts
    except Exception as exc:  # an unusual graph: keep it unfused (the gates judge either way)
        logger.warning(
            "ONNX export: onnxruntime's fusions failed (%s); the graph is kept unfused", exc
        )
        return None
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


def trace_to_onnx(
    model: nn.Module,
    example: Mapping[str, torch.Tensor],
    path: Path,
    *,
    skip_outputs: Sequence[str] = (),
    opset: int = OPSET,
) -> tuple[list[str], list[str]]:
    """Trace *model* on *example* (graph inputs) into *path*; returns (inputs, outputs)."""
    inputs = list(example)
    with torch.no_grad():
        eager = model(dict(example))
    outputs = [
        k for k, v in eager.items() if isinstance(v, torch.Tensor) and k not in set(skip_outputs)
    ]
    graph = _Graph(model, inputs, outputs).eval()
    dynamic: dict[str, dict[int, str]] = {}
    for name in inputs:
        dims = example[name].dim()
        dynamic[name] = {0: "batch", 1: "sequence"} if dims >= 2 else {0: "batch"} if dims else {}
    for name in outputs:
        dynamic[name] = {i: f"{name}_{i}" for i in range(eager[name].dim())}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python values: checked by parity
        torch.onnx.export(
            graph,
            tuple(example[k] for k in inputs),
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
    return inputs, outputs


# ---- comparison ---------------------------------------------------------------------------
def _leaves(value: Any, floats: bool) -> list[Any]:
    if isinstance(value, Mapping):
        keys = sorted(value, key=str)
        return [x for k in keys for x in [*([] if floats else [k]), *_leaves(value[k], floats)]]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _leaves(v, floats)]
    is_float = isinstance(value, (float, np.floating))
    return [value] if is_float == floats else []


def prediction_agreement(reference: Sequence[Any], other: Sequence[Any]) -> float:
    """Fraction of predictions that agree: every label, tag, span and token equal (scores
    and probabilities ignored); predictions made of numbers only (a regression score, a
    similarity) agree within 1 % of the reference predictions' range."""
    if not reference:
        return 1.0
    numbers = [x for p in reference for x in _leaves(p, True)]
    spread = (max(numbers) - min(numbers)) if numbers else 0.0
    tolerance = 0.01 * (spread or 1.0)
    same = 0
    for a, b in zip(reference, other):
        labels_a, labels_b = _leaves(a, False), _leaves(b, False)
        if labels_a != labels_b:
            continue
        if not labels_a:  # a number-only prediction
            fa, fb = _leaves(a, True), _leaves(b, True)
            if len(fa) != len(fb) or any(abs(x - y) > tolerance for x, y in zip(fa, fb)):
                continue
        same += 1
    return same / len(reference)


def _max_diff(ours: Mapping[str, np.ndarray], theirs: Mapping[str, np.ndarray]) -> float:
    worst = 0.0
    for name, a in ours.items():
        b = theirs[name]
        if a.shape != b.shape:
            return math.inf
        if not a.size:
            continue
        if np.issubdtype(a.dtype, np.floating):
            worst = max(worst, float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()))
        elif not np.array_equal(a, b):
            return math.inf
    return worst


def _torch_outputs(model: nn.Module, batch: Mapping[str, torch.Tensor], names: Sequence[str]):
    device = next(model.parameters()).device
    with torch.no_grad():  # the class's forward: fp32, whatever compiled forward training left
        out = type(model).forward(model, {k: v.to(device) for k, v in batch.items()})
    return {k: out[k].detach().float().cpu().numpy() for k in names}


def _probe(run: Run, model: nn.Module, example: Mapping[str, torch.Tensor]) -> dict:
    """*example* with its token ids replaced by random vocabulary ids (special tokens and
    padding kept, a mask token in every row): inputs no held-out text shows."""
    generator = torch.Generator().manual_seed(1)
    special = torch.tensor(run.tokenizer.all_special_ids or [-1])
    vocab = int(model.encoder.config.vocab_size)
    out: dict[str, torch.Tensor] = {}
    for name, value in example.items():
        if name.endswith("input_ids") and value.dim() == 2:
            noise = torch.randint(5, vocab, value.shape, generator=generator)
            ids = torch.where(torch.isin(value, special), value, noise)
            if run.tokenizer.mask_token_id is not None and value.shape[1] > 3:
                ids[:, 2] = run.tokenizer.mask_token_id
            out[name] = ids
        else:
            out[name] = value.clone()
    return out


# ---- export -------------------------------------------------------------------------------
def export_onnx(
    run: Run,
    path: str | os.PathLike,
    *,
    records: Any = None,
    atol: float = ATOL,
    min_agreement: float = MIN_AGREEMENT,
    quantize: str | None = None,
    max_drop: float = MAX_DROP,
    opset: int = OPSET,
    optimize: bool = True,
) -> str:
    """Export *run* to an ONNX directory at *path* (absent or empty), verified.

    - *records*: held-out labelled data (any source ``run.evaluate`` takes, or records);
      default: the eval split ``finetune`` held out (``run.eval_records``).
    - *atol* / *min_agreement*: the parity gate (largest |Δ output| and the fraction of
      equal predictions between the torch model and the graph).
    - *quantize*: ``"int8"`` writes an int8 graph instead, whose matrix products scale
      each token's activations alone (:func:`per_token_int8`: the closest to fp32);
      ``"int8-per-tensor"`` one quantized by onnxruntime's ``quantize_dynamic`` (one scale
      per activation tensor: 5-15 % faster, more labels flip).
      Either is refused when the task's metric on *records* drops more than *max_drop*
      points (1 point = 0.01).
    - *optimize*: fuse the encoder's attention, layer norms and GELUs into onnxruntime's
      fused operators (``onnxruntime.transformers.optimizer``, BERT-like encoders) before
      the gates: faster, but the graph then needs onnxruntime; ``False`` keeps standard
      ONNX operators only (for other runtimes).

    Raises :class:`ExportError` (with the figures) when a gate fails, and
    :class:`BundleError` when *path* exists and is not an empty directory.

    Example::

        run.export("out/onnx", format="onnx", atol=1e-4, min_agreement=1.0)
    """
    try:  # a clear error before any work
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            f"format='onnx' needs onnx and onnxruntime ({exc}): pip install 'tunekit[onnx]'"
        ) from None

    from .atomic import atomic_directory
    from .bundle import _sha256, library_versions
    from .config import config_to_dict

    target = Path(path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BundleError(
            f"ONNX export target {target} exists and is not an empty directory; export into a new "
            f"or empty directory (nothing there is overwritten)"
        )
    if quantize not in (None, *QUANTIZE):
        raise ConfigError(
            f"quantize={quantize!r} is not known; use None, 'int8' (one activation scale per token) "
            f"or 'int8-per-tensor' (onnxruntime's quantize_dynamic)"
        )
    if not atol >= 0 or not 0 <= min_agreement <= 1:
        raise ConfigError(
            f"atol={atol} and min_agreement={min_agreement}: atol must be >= 0, min_agreement in [0, 1]"
        )
    task = run.task
    held_out = _held_out_records(run, records)
    if quantize and not held_out:
        raise ExportError(
            "quantize='int8' is gated on the task's metric over held-out labelled records, and there are "
            "none: pass records= (Python) or --data (CLI) with labelled data the run was not trained on"
        )
    model = exportable_model(run)
    post = _postprocess_spec(run, model)
    # labelled features: a task that masks its inputs when evaluating (fill-mask) then
    # shows the graph the positions it scores; labels themselves never enter the graph
    features = (
        task.encode(held_out, run.tokenizer, max_length=run.training.max_length, with_labels=True)[
            :LOGIT_FEATURES
        ]
        if held_out
        else []
    )
    batches = [
        graph_batch(task, task.collate(features[i : i + 32], run.tokenizer), run.tokenizer)
        for i in range(0, len(features), 32)
    ]
    from .taskmodel import probe_batch

    if batches:
        example = batches[0]
        probe = _probe(run, model, example)
    else:
        example = probe = graph_batch(task, probe_batch(model, run.tokenizer), run.tokenizer)
    from .onnx_runtime import (
        SERVING_BATCH_SIZE,
        decode_records,
        serving_threads,
        session_for,
        task_from_info,
    )

    workers, threads = serving_threads()  # the gates serve as tunekit.load() does
    with atomic_directory(target) as tmp:
        onnx_path = tmp / MODEL_FILE
        inputs, outputs = trace_to_onnx(
            model, example, onnx_path, skip_outputs=post["produces"] if post else (), opset=opset
        )
        fused = _fuse(onnx_path, model) if optimize else None
        session = session_for(onnx_path, threads=threads)
        parity = {"atol": atol, "min_agreement": min_agreement}
        # the reference is the run's own model (adapters unmerged, as trained), so a wrong
        # merge or copy shows up as well as a wrong graph
        reference_model = run.model.eval()
        parity["probe_max_abs_diff"] = _max_diff(
            _torch_outputs(reference_model, probe, outputs), _feed(session, probe, outputs)
        )
        held_diff = 0.0
        for batch in batches:
            held_diff = max(
                held_diff,
                _max_diff(
                    _torch_outputs(reference_model, batch, outputs), _feed(session, batch, outputs)
                ),
            )
        parity["held_out_max_abs_diff"] = held_diff if batches else None
        embedder = _export_embedder(
            model, reference_model, tmp, [probe, *batches], parity, opset=opset, optimize=optimize
        )
        run.tokenizer.save_pretrained(tmp / "tokenizer")
        meta: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": {
                "name": task.name,
                "config": config_to_dict(task.config),
                "state": task.state(),
                "labels": list(run.labels),
            },
            "strategy": run.strategy.name,
            "training": config_to_dict(run.training),
            "backbone": run.backbone,
            "metrics": run.metrics,
            "inputs": inputs,
            "outputs": outputs,
            "opset": opset,
            "optimized": fused,
            "quantization": None,
            "postprocess": post,
            "embedder": embedder,
            "versions": _versions(library_versions()),
        }
        _write_json(tmp / META_FILE, meta)
        # the graph is checked as tunekit.load() will serve it: the task rebuilt from the
        # written metadata, the saved tokenizer, the same decoding
        from transformers import AutoTokenizer

        served_task = task_from_info(meta, where=tmp)
        served_tokenizer = AutoTokenizer.from_pretrained(tmp / "tokenizer", trust_remote_code=False)

        def served(session: Any, records: list) -> list:
            return decode_records(
                session,
                meta,
                served_task,
                served_tokenizer,
                records,
                max_length=run.training.max_length,
                batch_size=SERVING_BATCH_SIZE,
                with_labels=True,
                options={},
                workers=workers,
            )

        torch_seconds = onnx_seconds = None
        reference: list = []
        if held_out:
            # labelled decoding: what evaluate() decodes (for fill-mask, the eval masks' top-1)
            start = time.perf_counter()
            reference = run._decode(held_out, with_labels=True, batch_size=None, options={})[0]
            torch_seconds = time.perf_counter() - start
            start = time.perf_counter()
            exported = served(session, held_out)
            onnx_seconds = time.perf_counter() - start
            parity["held_out_records"] = len(held_out)
            parity["agreement"] = prediction_agreement(reference, exported)
        else:
            parity["held_out_records"] = 0
            parity["agreement"] = None
            logger.warning(
                "ONNX export: no held-out records (pass records=), so parity was checked on the probe batch only"
            )
        embed_diff = parity.get("embedder_max_abs_diff", 0.0)
        worst = max(parity["probe_max_abs_diff"], held_diff, embed_diff)
        agreement = parity["agreement"]
        if not worst <= atol or (agreement is not None and agreement < min_agreement):
            embed_note = f", embedder {embed_diff:.3e}" if embedder else ""
            raise ExportError(
                f"the ONNX graph does not reproduce the run: max |Δ output| {worst:.3e} (probe "
                f"{parity['probe_max_abs_diff']:.3e}, held-out {held_diff:.3e}{embed_note}; atol={atol:g}), prediction agreement "
                f"{_pct(agreement)} on {parity['held_out_records']} held-out records (min_agreement="
                f"{min_agreement:g}); nothing was written. Raise atol / lower min_agreement if this is expected, "
                f"or report the model and task"
            )
        sizes = {"fp32_bytes": onnx_path.stat().st_size}
        speed = {
            "records": len(held_out),
            "torch_texts_per_s": _rate(len(held_out), torch_seconds),
            "onnx_fp32_texts_per_s": _rate(len(held_out), onnx_seconds),
        }
        if quantize:
            meta["quantization"] = _quantize_int8(
                run,
                tmp,
                held_out,
                reference,
                embed_batches=batches if embedder else [],
                method=quantize,
                served=served,
                threads=threads,
                max_drop=max_drop,
                sizes=sizes,
                speed=speed,
            )
        meta["parity"] = parity
        meta["size"] = sizes
        meta["speed"] = speed
        _write_json(tmp / META_FILE, meta)
        if post:
            source = Path(__file__).with_name("onnx_postprocess.py")
            (tmp / POSTPROCESS_FILE).write_text(source.read_text(encoding="utf-8"), "utf-8")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "files": {p.relative_to(tmp).as_posix(): _sha256(p) for p in files},
        }
        _write_json(tmp / MANIFEST, manifest)
    quant = meta["quantization"]
    logger.info(
        "ONNX export %s: max |Δ output| %.2e, agreement %s on %d held-out records%s",
        target,
        worst,
        _pct(agreement),
        parity["held_out_records"],
        f"; int8 {quant['metric']} drop {quant['drop_points']:.2f} points, "
        f"{sizes['int8_bytes'] / 2**20:.1f} MiB (fp32 {sizes['fp32_bytes'] / 2**20:.1f} MiB)"
        if quant
        else "",
    )
    return str(target)


def per_token_int8(
    source: str | os.PathLike, target: str | os.PathLike, *, contrib: bool | None = None
) -> int:
    """Rewrite every ``MatMul`` of the graph at *source* whose second input is a constant
    2-D float weight as an int8 matrix product with **one activation scale per token**
    (row), written to *target*; returns how many were rewritten.

    ``quantize_dynamic``'s ``DynamicQuantizeMatMul`` quantizes a whole activation tensor
    (every token of the padded batch) with one scale, so a token with large hidden values
    (BERT-like encoders have a few outlier dimensions) coarsens every other token. Here
    each row ``a`` of ``A`` gets ``s = max|a| / 127`` and ``QuantizeLinear(a / s, 1, 128)``
    rounds it to uint8 (zero point 128; ``|a / s| <= 127``, so nothing saturates); the
    weight gets one symmetric scale per output channel (``w = max|W[:, n]| / 127``, int8).
    The u8s8 integer GEMM of onnxruntime's MLAS (VNNI/AMX) multiplies them and ``y = · w ·
    s`` restores the scale. *contrib* (default: when the graph already uses onnxruntime's
    ``com.microsoft`` operators, i.e. a fused export) writes the product as
    ``MatMulIntegerToFloat``, which applies ``w`` in the GEMM's epilogue; otherwise
    standard ONNX operators only: ``MatMulInteger``, ``Cast``, ``Mul`` (opset >= 10).

    Example::

        per_token_int8("out/model.onnx", "out/model.int8.onnx")   # 36 for a 6-layer MiniLM
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    microsoft = "com.microsoft"
    if contrib is None:
        contrib = any(node.domain == microsoft for node in graph.node)
    weights = {i.name: i for i in graph.initializer}
    uses = Counter(name for node in graph.node for name in node.input)
    constants = {
        "tk_q_zero_point": np.array(128, np.uint8),
        "tk_q_one": np.array(1, np.float32),
        "tk_q_inv127": np.array(1 / 127, np.float32),
        "tk_q_eps127": np.array(127e-12, np.float32),  # a row of zeros: scale 1e-12, not 0
        "tk_q_flat": np.array([-1], np.int64),
        "tk_q_start": np.array([0], np.int64),
        "tk_q_last": np.array([-1], np.int64),
    }
    nodes: list[Any] = []
    added = [numpy_helper.from_array(v, k) for k, v in constants.items()]
    removed: set[str] = set()
    quantized: dict[tuple[str, int], str] = {}  # (input, K) -> its quantized rows' prefix
    count = 0
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or weight.data_type != TensorProto.FLOAT or len(weight.dims) != 2:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)
        count += 1
        p = f"tk_q{count}_"
        scale = np.maximum(np.abs(w).max(0) / 127, 1e-12).astype(np.float32)
        added += [
            numpy_helper.from_array(
                np.clip(np.round(w / scale), -127, 127).astype(np.int8), p + "w"
            ),
            numpy_helper.from_array(scale, p + "w_scale"),
        ]
        if uses[weight.name] == 1:
            removed.add(weight.name)

        def op(kind: str, inputs: list[str], output: str, **attrs: Any) -> None:
            nodes.append(helper.make_node(kind, inputs, [output], name=p + output, **attrs))  # noqa: B023

        a, y = node.input[0], node.output[0]
        k, n = (int(d) for d in weight.dims)
        if (a, k) not in quantized:  # products that share an input (Q, K, V) share its rows
            r = p + "a_"
            added.append(numpy_helper.from_array(np.array([-1, k], np.int64), r + "rows_k"))
            # the row scales [..., 1]: max(ReduceMax(a), -ReduceMin(a)) / 127 (two reads of
            # a, no |a| written), then a's rows [tokens, K] quantized per row (axis 0)
            op("ReduceMax", [a], r + "hi", axes=[-1], keepdims=1)
            op("ReduceMin", [a], r + "lo", axes=[-1], keepdims=1)
            op("Neg", [r + "lo"], r + "neg_lo")
            op("Max", [r + "hi", r + "neg_lo", "tk_q_eps127"], r + "amax")
            op("Mul", [r + "amax", "tk_q_inv127"], r + "s")
            op("Reshape", [a, r + "rows_k"], r + "rows")
            op("Reshape", [r + "s", "tk_q_flat"], r + "row_s")
            op("Shape", [r + "row_s"], r + "row_count")
            op("Expand", ["tk_q_zero_point", r + "row_count"], r + "row_zp")
            op("QuantizeLinear", [r + "rows", r + "row_s", r + "row_zp"], r + "q", axis=0)
            op("Shape", [a], r + "shape")
            op("Slice", [r + "shape", "tk_q_start", "tk_q_last"], r + "lead")
            quantized[a, k] = r
        r = quantized[a, k]
        added.append(numpy_helper.from_array(np.array([n], np.int64), p + "n"))
        if contrib:
            nodes.append(
                helper.make_node(
                    "MatMulIntegerToFloat",
                    [r + "q", p + "w", "tk_q_one", p + "w_scale", "tk_q_zero_point"],
                    [p + "y0"],
                    name=p + "y0",
                    domain=microsoft,
                )
            )
        else:
            op("MatMulInteger", [r + "q", p + "w", "tk_q_zero_point"], p + "i32")
            op("Cast", [p + "i32"], p + "f", to=TensorProto.FLOAT)
            op("Mul", [p + "f", p + "w_scale"], p + "y0")
        # back to a's leading axes with N columns, then each row times its scale
        op("Concat", [r + "lead", p + "n"], p + "y_shape", axis=0)
        op("Reshape", [p + "y0", p + "y_shape"], p + "y1")
        nodes.append(helper.make_node("Mul", [p + "y1", r + "s"], [y], name=p + "y"))
    kept = [i for i in graph.initializer if i.name not in removed]
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    del graph.node[:]
    graph.node.extend(nodes)
    if contrib and not any(o.domain == microsoft for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(microsoft, 1))
    onnx.save(model, str(target))
    return count


def _quantize_file(source: Path, target: Path, method: str = "int8") -> None:
    """int8 quantization of the graph at *source* into *target*: ``int8`` rewrites the
    matrix products with per-token activation scales (:func:`per_token_int8`), then lets
    ``quantize_dynamic`` quantize the fused ``Attention`` (QKV) and embedding operators;
    ``int8-per-tensor`` is ``quantize_dynamic`` on every operator it supports."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root_level = logging.root.level
    logging.root.setLevel(logging.ERROR)  # its advice to pre-process is for static quantization
    try:
        options: dict[str, Any] = {}
        if method == "int8":
            rewritten = target.with_name(target.name + ".per-token.onnx")
            per_token_int8(source, rewritten)
            ops = ["Attention", "EmbedLayerNormalization", "Gather"]
            source, options = rewritten, {"op_types_to_quantize": ops}
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,  # one scale per output channel: fewer flipped labels near 0.5
            # shape inference does not type the outputs of onnxruntime's fused operators
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            **options,
        )
        if method == "int8":
            rewritten.unlink()
    finally:
        logging.root.setLevel(root_level)


def _quantize_int8(
    run: Run,
    tmp: Path,
    held_out: list,
    reference: list,
    *,
    embed_batches: Sequence[Mapping[str, torch.Tensor]] = (),
    method: str = "int8",
    served: Callable[[Any, list], list],
    threads: int | None = None,
    max_drop: float,
    sizes: dict,
    speed: dict,
) -> dict[str, Any]:
    from .onnx_runtime import session_for

    fp32_path = tmp / MODEL_FILE
    int8_path = tmp / ".model.int8.onnx"
    _quantize_file(fp32_path, int8_path, method)
    sizes["int8_bytes"] = int8_path.stat().st_size
    int8_session = session_for(int8_path, threads=threads)
    reference_metrics = run.task.metrics(reference, held_out)
    start = time.perf_counter()
    quantized = served(int8_session, held_out)
    speed["onnx_int8_texts_per_s"] = _rate(len(held_out), time.perf_counter() - start)
    quantized_metrics = run.task.metrics(quantized, held_out)
    name, higher = _gate_metric(run.task, reference_metrics)
    ref, got = float(reference_metrics[name]), float(quantized_metrics[name])
    drop = drop_points(ref, got, higher=higher)
    figures: dict[str, Any] = {
        "kind": "int8",
        "variant": method,
        "method": METHODS[method],
        "metric": name,
        "reference": ref,
        "quantized": got,
        "drop_points": drop,
        "max_drop": max_drop,
        "agreement": prediction_agreement(reference, quantized),
        "records": len(held_out),
    }
    if not drop <= max_drop:
        raise ExportError(
            f"int8 quantization costs {drop:.2f} points of {name} on {len(held_out)} held-out records "
            f"({ref:.4f} → {got:.4f}; max_drop={max_drop:g}; label agreement {_pct(figures['agreement'])}); "
            f"nothing was written. Export fp32 (quantize=None) or raise max_drop"
        )
    if embed_batches:
        # the bi-encoder's embedder graph is quantized the same way; its embeddings are
        # compared with the fp32 graph's (the metric gate above covers the same encoder)
        embed_fp32, embed_int8 = tmp / EMBEDDER_FILE, tmp / ".embedder.int8.onnx"
        _quantize_file(embed_fp32, embed_int8, method)
        sizes["embedder_fp32_bytes"] = embed_fp32.stat().st_size
        sizes["embedder_int8_bytes"] = embed_int8.stat().st_size
        cosines = _embedding_cosines(
            session_for(embed_fp32), session_for(embed_int8), embed_batches
        )
        figures["embedder_min_cosine"] = float(cosines.min())
        figures["embedder_median_cosine"] = float(np.median(cosines))
        os.replace(embed_int8, embed_fp32)
    os.replace(int8_path, fp32_path)
    return figures


def _embedder_feeds(batch: Mapping[str, torch.Tensor], inputs: Sequence[str]) -> dict:
    return {k: batch[k] for k in inputs}


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(norms, 1e-12)


def _embedding_cosines(ours: Any, theirs: Any, batches: Sequence[Mapping[str, torch.Tensor]]):
    """Row cosines of two embedder sessions' outputs over *batches*."""
    inputs = [i.name for i in ours.get_inputs()]
    out = []
    for batch in batches:
        feeds = _embedder_feeds(batch, inputs)
        out.append(
            _cosine(
                _feed(ours, feeds, ["embedding"])["embedding"],
                _feed(theirs, feeds, ["embedding"])["embedding"],
            )
        )
    return np.concatenate(out)


def _export_embedder(
    model: nn.Module,
    reference_model: nn.Module,
    tmp: Path,
    batches: Sequence[Mapping[str, torch.Tensor]],
    parity: dict[str, Any],
    *,
    opset: int,
    optimize: bool,
) -> dict[str, Any] | None:
    """For a model whose head embeds one text at a time (a bi-encoder), trace the
    embedder graph ``embedder.onnx`` (tokenized texts → pooled embedding, unnormalized) and
    measure it against the run's own model on *batches* (one text per row): the largest
    |Δ| of an embedding component and the smallest cosine go into *parity*. ``None`` (and
    nothing written) for any other model."""
    embedder = embedder_of(model)
    if embedder is None or not batches:
        return None
    inputs = [k for k in EMBEDDER_INPUTS if k in batches[0]]
    path = tmp / EMBEDDER_FILE
    trace_to_onnx(embedder, _embedder_feeds(batches[0], inputs), path, opset=opset)
    fused = _fuse(path, model) if optimize else None
    from .onnx_runtime import session_for

    session = session_for(path)
    reference = embedder_of(reference_model)
    worst, cosines = 0.0, []
    for batch in batches:
        feeds = _embedder_feeds(batch, inputs)
        ours = _torch_outputs(reference, feeds, ["embedding"])
        theirs = _feed(session, feeds, ["embedding"])
        worst = max(worst, _max_diff(ours, theirs))
        cosines.append(_cosine(ours["embedding"], theirs["embedding"]))
    parity["embedder_max_abs_diff"] = worst
    parity["embedder_min_cosine"] = float(np.concatenate(cosines).min())
    head = model.head
    return {
        "file": EMBEDDER_FILE,
        "inputs": inputs,
        "output": "embedding",
        "width": int(theirs["embedding"].shape[-1]),
        "pooling": getattr(head, "pooling", None),
        "optimized": fused,
    }


def drop_points(reference: float, quantized: float, *, higher: bool = True) -> float:
    """How many points (0.01 of a 0-1 metric) *quantized* lost against *reference*,
    rounded to 1e-9 so that a drop of exactly ``max_drop`` passes the gate
    (``(0.805 - 0.795) * 100`` is 1.0000000000000009 in floating point).

    Example::

        drop_points(0.805, 0.795)   # 1.0
    """
    return round(100.0 * (reference - quantized) * (1 if higher else -1), 9)


def _gate_metric(task: Any, metrics: Mapping[str, float]) -> tuple[str, bool]:
    """The metric the int8 gate watches: the task's ``default_metric`` when it is one of
    its metrics, else the first one; lower is better for losses, errors and perplexity."""
    numeric = [k for k, v in metrics.items() if isinstance(v, (int, float))]
    if not numeric:
        raise ExportError(
            f"task {task.name!r} reports no metric on the held-out records, so int8 cannot be gated; "
            f"export fp32 (quantize=None)"
        )
    name = task.default_metric if task.default_metric in numeric else numeric[0]
    higher = getattr(task, "greater_is_better", None)
    if higher is None or name != task.default_metric:
        higher = not any(w in name for w in ("loss", "error", "perplexity", "mse", "mae"))
    return name, bool(higher)


def _held_out_records(run: Run, records: Any) -> list:
    if records is None:
        return list(getattr(run, "eval_records", None) or [])
    return run.task.read(records, name="records")


def _feed(session: Any, batch: Mapping[str, torch.Tensor], outputs: Sequence[str]):
    from .onnx_runtime import run_session

    return run_session(session, {k: v.numpy() for k, v in batch.items()}, outputs)


def _versions(versions: dict[str, str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = dict(versions)
    for name in ("onnx", "onnxruntime"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    out.setdefault("python", platform.python_version())
    return out


def _write_json(path: Path, data: Any) -> None:
    from .bundle import _json_default

    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _rate(n: int, seconds: float | None) -> float | None:
    return n / seconds if seconds else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"
