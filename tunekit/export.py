"""Export a trained run to the 🤗 transformers ``save_pretrained`` layout.

The split of work: core merges what the strategy wrapped (LoRA and the other mergeable
adapters fold into the encoder's weights), checks that the head reads the encoder's last
layer, asks the task for a transformers model (:meth:`tunekit.Task.export_hf`), checks that
model against the tunekit model on a probe batch, and writes it with the tokenizer. A task
builds its model with the helpers here (:func:`sequence_classification`,
:func:`token_classification`, :func:`feature_extraction`) or from :func:`encoder_model`
and its own head mapping (fill-mask), and
refuses with an :class:`~tunekit.errors.ExportError` when its head has no exact
equivalent among transformers' classes.

Example::

    run.export("out/hf", format="hf")
    from transformers import pipeline
    pipeline("text-classification", model="out/hf")("what a wonderful film")
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import nn

from .atomic import EXPORT_RECORD
from .errors import ConfigError, ExportError
from .head import MLPHead
from .taskmodel import LastHiddenState, TaskModel, detached_copy, probe_batch

if TYPE_CHECKING:
    from .run import Run

FORMATS = ("hf", "onnx")
#: largest difference allowed between the tunekit model's and the exported model's outputs
EXPORT_TOLERANCE = 1e-4
EXPORT_FILE = EXPORT_RECORD  # also lists the files written, so a re-export may replace them


@attrs.frozen(kw_only=True)
class HFExport:
    """What :meth:`tunekit.Task.export_hf` returns.

    - ``model``: a transformers ``PreTrainedModel`` (``AutoModelFor...`` class) with the
      trained weights; core saves it with ``save_pretrained``.
    - ``pipeline``: the ``transformers.pipeline`` task that loads it
      (``"text-classification"``, ``"token-classification"``, ``"fill-mask"``...).
    - ``pipeline_options``: keyword arguments the pipeline call needs to give tunekit's
      predictions (e.g. ``{"function_to_apply": "none"}`` for a score).
    - ``notes``: what differs from ``run.predict()`` (shown in the written model card).
    - ``check``: ``check(batch) → (tunekit_outputs, exported_outputs)``, two tensors that
      must be equal up to :data:`EXPORT_TOLERANCE` on a probe batch, or ``None``.
    """

    model: Any
    pipeline: str
    pipeline_options: Mapping[str, Any] = attrs.field(factory=dict)
    notes: str = ""
    check: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]] | None = None


# ---- core: merge, ask the task, verify, save ------------------------------------------------
def export_run(run: Run, path: str | os.PathLike, *, format: str = "hf", **options: Any) -> str:
    """Write *run* to *path* in *format*: ``"hf"`` (transformers layout), or ``"onnx"``
    (:func:`tunekit.onnx_export.export_onnx`, which takes *options*)."""
    if format not in FORMATS:
        from .errors import close_matches_hint

        raise ConfigError(
            f"export format={format!r} is not known{close_matches_hint(format, FORMATS) or '.'} "
            f"Use one of {', '.join(FORMATS)}."
        )
    from .atomic import atomic_directory, check_save_target, list_files

    check_save_target(path)  # before any work: never replace a folder of the user's files
    if format == "onnx":
        from .onnx_export import export_onnx

        return export_onnx(run, path, **options)
    if options:
        raise ConfigError(
            f"export option(s) {sorted(options)} apply to format='onnx' only; format='hf' takes none"
        )
    exported = hf_export(run)

    with atomic_directory(Path(path), protect=True) as tmp:
        exported.model.save_pretrained(tmp)
        run.tokenizer.save_pretrained(tmp)
        info = {
            "pipeline": exported.pipeline,
            "pipeline_options": dict(exported.pipeline_options),
            "task": run.task.name,
            "strategy": run.strategy.name,
            "base_model": run.backbone.get("name"),
            "notes": exported.notes,
            "max_length": run.training.max_length,
        }
        (tmp / "README.md").write_text(_model_card(info), encoding="utf-8")
        info["files"] = [*list_files(tmp), EXPORT_FILE]  # what a later export may replace
        (tmp / EXPORT_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return str(path)


def hf_export(run: Run) -> HFExport:
    """The task's transformers model for *run* (adapters merged), verified on a probe batch."""
    from .task import Task

    if type(run.task).export_hf is Task.export_hf:  # refuse before touching the model
        run.task.export_hf(run.model)
    try:
        model = run.strategy.merged_model(run.model)
    except ConfigError as exc:
        raise ExportError(
            f"the {run.strategy.name!r} adapter cannot be merged into the encoder, so the run cannot be "
            f"exported to transformers ({exc}). Train with strategy='lora' (or another mergeable adapter) or 'full'"
        ) from exc
    model = detached_copy(model, run.model)
    model.eval()
    if type(model.representation) is not LastHiddenState:
        raise ExportError(
            f"the head of this run reads {type(model.representation).__name__} (strategy {run.strategy.name!r}: a "
            f"learned mix of the encoder's layers), but transformers' model classes read the last layer only; "
            f"there is no exact export. Train with strategy 'full', 'lora' or 'top-k' to export"
        )
    exported = run.task.export_hf(model)
    exported.model.eval()
    if exported.check is not None:
        batch = probe_batch(model, run.tokenizer)
        with torch.no_grad():
            ours, theirs = exported.check(batch)
        diff = float((ours.float() - theirs.float()).abs().max()) if ours.numel() else 0.0
        if not diff <= EXPORT_TOLERANCE:
            raise ExportError(
                f"the exported {type(exported.model).__name__} does not reproduce the run's outputs (max abs diff "
                f"{diff:.2e} > {EXPORT_TOLERANCE:g}); task {run.task.name!r}'s export_hf maps the head wrongly"
            )
    return exported


# ---- helpers tasks build their export with ------------------------------------------------------
def encoder_model(auto_class: Any, model: TaskModel, **config_changes: Any) -> Any:
    """An ``auto_class`` model (``AutoModelForQuestionAnswering``...) for *model*'s encoder
    config with *config_changes* set, holding the trained encoder's weights; its head is
    new, for the task to fill in. Refuses (``ExportError``) when transformers has no such
    class for the model type or the encoder's weights do not fit its base model.

    Example::

        hf = encoder_model(AutoModelForQuestionAnswering, model, num_labels=2)
        hf.qa_outputs.load_state_dict(model.head.qa_outputs.state_dict())
    """
    from transformers.utils import logging as hf_logging

    encoder = model.encoder
    config = copy.deepcopy(encoder.config)
    for key, value in config_changes.items():
        setattr(config, key, value)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        hf = auto_class.from_config(config, trust_remote_code=False)
    except ValueError as exc:
        raise ExportError(
            f"transformers has no {auto_class.__name__} for model type {config.model_type!r}: {exc}"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    base = hf.base_model
    missing, unexpected = base.load_state_dict(encoder.state_dict(), strict=False)
    # a token classifier's encoder has no pooler: the trained encoder's pooler is dropped
    unexpected = [k for k in unexpected if not k.startswith("pooler.")]
    if unexpected or [k for k in missing if not k.startswith("pooler.")]:
        raise ExportError(
            f"the trained encoder ({type(encoder).__name__}) does not fit {type(hf).__name__}'s "
            f"{type(base).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return hf.eval()


def _head_layers(head: Any, what: str) -> tuple[list[nn.Linear], list[nn.Module]]:
    if not isinstance(head, MLPHead) and not hasattr(head, "net"):
        raise ExportError(
            f"{what}: the head {type(head).__name__} has no transformers equivalent; export supports "
            f"tunekit's linear / mlp heads"
        )
    layers = list(head.net)
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    activations = [m for m in layers if not isinstance(m, (nn.Linear, nn.Dropout))]
    return linears, activations


def _copy_linear(target: nn.Linear, source: nn.Linear, *, scale: float = 1.0, shift: float = 0.0):
    with torch.no_grad():
        target.weight.copy_(source.weight * scale)
        target.bias.copy_(source.bias * scale + shift)


#: ``problem_type`` of transformers' sequence classifiers, by tunekit label kind
PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}


def sequence_classification(
    model: TaskModel,
    *,
    labels: Sequence[str],
    problem_type: str,
    scale: float = 1.0,
    shift: float = 0.0,
    what: str = "this task",
) -> Any:
    """``AutoModelForSequenceClassification`` equal to *model*'s encoder + pooled head.

    The head must be what transformers' class computes on the first token:

    - BERT-like models (BERT, ERNIE, MiniLM...: ``pooler → dropout → classifier``): an
      ``mlp`` head with ``pooling="cls"``, ``hidden=[hidden_size]`` and
      ``activation="tanh"`` — its first layer becomes the pooler, its last the classifier;
    - RoBERTa-like (``classifier.dense → tanh → classifier.out_proj``): the same head.

    Any other head (mean / max pooling, ``linear``, other widths or activations) is an
    :class:`ExportError` that says which options to train with. The classifier's outputs
    are multiplied by *scale* and shifted by *shift* (a regression head trained on
    normalised scores exports the scores themselves).
    """
    from transformers import AutoModelForSequenceClassification

    head = model.head
    linears, activations = _head_layers(head, what)
    hidden_size = model.encoder.config.hidden_size
    layout_hint = (
        f"train with head='mlp', hidden=[{hidden_size}], activation='tanh', pooling='cls' (the layout of "
        f"transformers' pooler + classifier) to export"
    )
    pooling = getattr(head, "pooling", None)
    if pooling != "cls":
        raise ExportError(
            f"{what}: the head pools tokens by {pooling!r}, but transformers' sequence classifiers read the first "
            f"token ([CLS]) only, so the run cannot be exported exactly; {layout_hint}"
        )
    if (
        len(linears) != 2
        or len(activations) != 1
        or not isinstance(activations[0], nn.Tanh)
        or linears[0].out_features != hidden_size
    ):
        shape = " → ".join([str(linears[0].in_features)] + [str(m.out_features) for m in linears])
        acts = ", ".join(type(a).__name__ for a in activations) or "none"
        raise ExportError(
            f"{what}: the head is {shape} with activation(s) {acts}; transformers' sequence classifiers are "
            f"{hidden_size} → {hidden_size} → tanh → labels, so there is no exact export; {layout_hint}"
        )
    id2label = {i: str(label) for i, label in enumerate(labels)}
    hf = encoder_model(
        AutoModelForSequenceClassification,
        model,
        num_labels=len(labels),
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
        problem_type=problem_type,
    )
    dense, out = linears
    classifier = hf.classifier
    pooler = getattr(hf.base_model, "pooler", None)
    if isinstance(classifier, nn.Linear) and pooler is not None and hasattr(pooler, "dense"):
        if not isinstance(getattr(pooler, "activation", None), nn.Tanh):
            raise ExportError(
                f"{what}: {type(hf).__name__}'s pooler is not dense → tanh; no exact export"
            )
        _copy_linear(pooler.dense, dense)
        _copy_linear(classifier, out, scale=scale, shift=shift)
    elif hasattr(classifier, "dense") and hasattr(classifier, "out_proj"):
        _copy_linear(classifier.dense, dense)
        _copy_linear(classifier.out_proj, out, scale=scale, shift=shift)
    else:
        raise ExportError(
            f"{what}: {type(hf).__name__} (model type {hf.config.model_type!r}) has a classifier tunekit does not "
            f"know how to map onto; export supports BERT-like and RoBERTa-like models"
        )
    return hf


def sequence_classification_check(
    model: TaskModel, hf: Any, *, scale: float = 1.0, shift: float = 0.0
) -> Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
    """A :attr:`HFExport.check` comparing pooled-head logits with the classifier's."""

    def check(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ours = model(batch)["logits"].float() * scale + shift
        return ours, hf(**model.encoder_inputs(batch)).logits.float()

    return check


def token_classification(
    model: TaskModel, *, labels: Sequence[str], what: str = "this task"
) -> Any:
    """``AutoModelForTokenClassification`` equal to *model*'s encoder + per-token linear head
    (``dropout → linear``, as transformers' token classifiers). A head with hidden layers
    is an :class:`ExportError`."""
    from transformers import AutoModelForTokenClassification

    linears, activations = _head_layers(model.head, what)
    if len(linears) != 1 or activations:
        raise ExportError(
            f"{what}: the token head has {len(linears)} linear layers; transformers' token classifiers have one "
            f"(dropout → linear), so there is no exact export. Train with hidden=[] to export"
        )
    id2label = {i: str(label) for i, label in enumerate(labels)}
    hf = encoder_model(
        AutoModelForTokenClassification,
        model,
        num_labels=len(labels),
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
    )
    if not isinstance(getattr(hf, "classifier", None), nn.Linear):
        raise ExportError(
            f"{what}: {type(hf).__name__} has no linear classifier tunekit can map onto"
        )
    _copy_linear(hf.classifier, linears[0])
    return hf


def token_classification_check(model: TaskModel, hf: Any):
    """A :attr:`HFExport.check` comparing per-token logits (non-padding tokens)."""

    def check(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        keep = batch["attention_mask"].bool()
        ours = model(batch)["logits"].float()[keep]
        return ours, hf(**model.encoder_inputs(batch)).logits.float()[keep]

    return check


def feature_extraction(model: TaskModel) -> Any:
    """``AutoModel``: the (merged) encoder alone, for the ``feature-extraction`` pipeline."""
    from transformers import AutoModel

    return encoder_model(AutoModel, model)


def _model_card(info: Mapping[str, Any]) -> str:
    notes = f"\n## Differences from tunekit\n\n{info['notes']}\n" if info["notes"] else ""
    return f"""---
library_name: transformers
pipeline_tag: {info["pipeline"]}
tags: [tunekit]
---

# {info["task"]} model exported by tunekit

Fine-tuned with tunekit (task `{info["task"]}`, strategy `{info["strategy"]}`, base model
`{info["base_model"]}`); exported with `run.export(dir, format="hf")`.

```python
{loading_code(info, "path/to/this/directory", max_length=info.get("max_length", 512))}
```
{notes}"""


#: the model class that loads each exported ``pipeline`` task where the installed
#: transformers has no such pipeline (transformers 5 removed ``question-answering``)
AUTO_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "fill-mask": "AutoModelForMaskedLM",
    "feature-extraction": "AutoModel",
    "question-answering": "AutoModelForQuestionAnswering",
}


def loading_code(info: Mapping[str, Any], path: str, *, max_length: int) -> str:
    """Python that loads the export at *path* and runs it on the transformers installed
    here: the ``pipeline`` call (with the options that give tunekit's predictions and the
    run's ``max_length``) when this transformers has that pipeline, else the
    ``AutoModelFor...`` class and its tokenizer with the same truncation.

    Example::

        print(loading_code({"pipeline": "text-classification"}, "out/hf", max_length=128))
    """
    from transformers.pipelines import SUPPORTED_TASKS

    pipeline = info["pipeline"]
    options = dict(info.get("pipeline_options") or {})
    if pipeline in SUPPORTED_TASKS:
        text = '"..."'
        if pipeline == "question-answering":
            options.setdefault("max_seq_len", max_length)
            call = 'pipe(question="...", context="..."'
        elif pipeline == "fill-mask":
            text = '"... " + pipe.tokenizer.mask_token + " ..."'
            call = (
                f"pipe({text}, tokenizer_kwargs={{'truncation': True, 'max_length': {max_length}}}"
            )
        elif pipeline == "feature-extraction":
            call = (
                f"pipe({text}, tokenize_kwargs={{'truncation': True, 'max_length': {max_length}}}"
            )
        else:
            call = f"pipe({text}, truncation=True, max_length={max_length}"
        shown = "".join(f", {k}={v!r}" for k, v in options.items())
        return "\n".join(
            [
                "from transformers import pipeline",
                f'pipe = pipeline("{pipeline}", model="{path}")',
                f"{call}{shown})",
            ]
        )
    auto = AUTO_CLASSES.get(pipeline, "AutoModel")
    lines = [
        "import torch",
        f"from transformers import AutoTokenizer, {auto}",
        f'tokenizer = AutoTokenizer.from_pretrained("{path}")',
        f'model = {auto}.from_pretrained("{path}").eval()',
    ]
    if pipeline == "question-answering":
        lines += [
            'question, context = "...", "..."',
            f"inputs = tokenizer(question, context, truncation='only_second', max_length={max_length}, "
            "return_tensors='pt')",
            "with torch.no_grad():",
            "    out = model(**inputs)",
            "start = int(out.start_logits[0].argmax())",
            "end = start + int(out.end_logits[0, start:].argmax())",
            'answer = tokenizer.decode(inputs["input_ids"][0, start : end + 1])',
        ]
    else:
        lines += [
            f"inputs = tokenizer(['...'], truncation=True, max_length={max_length}, return_tensors='pt')",
            "with torch.no_grad():",
            "    out = model(**inputs)",
        ]
    return "\n".join(lines)
