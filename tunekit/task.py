"""The :class:`Task` interface: what is learned and how records become predictions.

Data flows one way through a task::

    source ──read()──▶ records ──encode()──▶ features ──collate()──▶ batch
    batch ──TaskModel──▶ outputs ──loss()──▶ scalar            (training)
    outputs ──batch_outputs()──▶ per-feature arrays ──decode()──▶ predictions
    predictions + records ──metrics()──▶ {"accuracy": ...}

*records* are plain dicts in the task's own normalised form (e.g. ``{"text": ...,
"label": ...}``); *features* are dicts of token ids plus ``example_index`` (which record
they came from: a long record may give several windows). A task never reaches into the
trainer and never knows the strategy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import numpy as np
import torch

from .errors import ConfigError, ExportError
from .labels import LabelSchema

if TYPE_CHECKING:
    from .export import HFExport
    from .head import Head
    from .models import Backbone
    from .taskmodel import TaskModel

Record = dict[str, Any]
Feature = dict[str, Any]


@attrs.frozen(kw_only=True)
class NoOptions:
    """Options of a task or strategy that takes none."""


ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Task:
    """Base class of every task. Subclass, set ``name``, and implement the abstract methods.

    Class attributes:

    - ``name`` / ``aliases``: how users ask for the task (``task="classify"``).
    - ``Config``: a frozen attrs class of the task's options; ``finetune()`` routes keyword
      arguments that match its fields here.
    - ``default_metric`` / ``greater_is_better``: what best-model selection and early
      stopping watch unless the user says otherwise (``"eval_loss"`` by default).
    - ``supervised``: ``False`` for tasks (topics) that fit something other than a head;
      they override :meth:`fit` instead of using the trainer's supervised loop.

    Instances hold the options (``self.config``) and what was learned from the training
    data (``self.schema``); :meth:`state` / :meth:`load_state` make that JSON-serialisable
    for bundles.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    Config: ClassVar[type] = NoOptions
    default_metric: ClassVar[str] = "eval_loss"
    greater_is_better: ClassVar[bool | None] = None
    supervised: ClassVar[bool] = True
    #: the :attr:`Head.level` values this task's heads may have; ``get_head(name, task=...)``
    #: refuses a head of another level (``classify`` takes no ``crf`` head) and registration
    #: checks the default of a ``head`` option against it
    head_levels: ClassVar[tuple[str, ...]] = ("sequence",)
    #: ``False`` when :meth:`collate_train` changes the encoder's inputs at random (masked
    #: LM): a frozen encoder's outputs then cannot be cached once and reused every epoch.
    cacheable_inputs: ClassVar[bool] = True
    #: the :class:`~tunekit.run.Run` subclass ``tunekit.load()`` returns for this task's
    #: bundles (``None``: ``Run``); e.g. the topics plugin's ``TopicRun``
    run_class: ClassVar[type | None] = None

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        self.schema: LabelSchema | None = None

    # ---- data ---------------------------------------------------------------------------
    def read(self, source: Any, *, name: str = "data") -> list[Record]:
        """Turn user data (path, Dataset, DataFrame, list) into normalised records.

        *name* is the argument it came from (``data`` / ``eval_data``), for error messages.
        """
        raise NotImplementedError

    def setup(self, records: Sequence[Record]) -> None:
        """Learn what the task needs from the training records (e.g. the label schema)."""

    def stratify_key(self, record: Record) -> Any:
        """A hashable used to stratify the automatic eval split, or ``None``."""
        return None

    def parse_inputs(self, inputs: Any) -> list[Record]:
        """Turn ``predict()`` inputs (a string, a list of strings, dicts...) into records."""
        raise NotImplementedError

    def encode(
        self, records: Sequence[Record], tokenizer: Any, *, max_length: int, with_labels: bool
    ) -> list[Feature]:
        """Tokenize records into features; each feature has ``example_index``."""
        raise NotImplementedError

    def collate(self, features: Sequence[Feature], tokenizer: Any) -> dict[str, torch.Tensor]:
        """Pad features into a batch. The default pads :data:`ENCODER_INPUTS` with the
        tokenizer and stacks every other numeric key (``labels``...)."""
        return default_collate(features, tokenizer)

    def collate_train(self, features: Sequence[Feature], tokenizer: Any) -> dict[str, torch.Tensor]:
        """Pad features into a *training* batch (the trainer's training loop calls this;
        evaluation and prediction call :meth:`collate`). The default is :meth:`collate`;
        tasks that corrupt inputs at random (masked LM) draw fresh noise here and keep
        :meth:`collate` deterministic so evaluation is comparable across epochs."""
        return self.collate(features, tokenizer)

    # ---- model --------------------------------------------------------------------------
    def build_head(self, backbone: Backbone) -> Head:
        """Build this task's head for *backbone* (called again, identically, at load)."""
        raise NotImplementedError

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        raise NotImplementedError

    def batch_outputs(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Tensors (batch first) kept for :meth:`decode`. Override to keep less (a masked
        LM keeps only the masked positions, not ``[tokens, vocab]`` logits)."""
        return dict(outputs)

    def decode(
        self,
        outputs: Sequence[dict[str, np.ndarray]],
        features: Sequence[Feature],
        records: Sequence[Record],
        **options: Any,
    ) -> list[Any]:
        """One prediction per record from per-feature outputs (``outputs[i]`` belongs to
        ``features[i]``). *options* are ``predict()`` keyword arguments (``top_k``...)."""
        raise NotImplementedError

    def metrics(self, predictions: Sequence[Any], records: Sequence[Record]) -> dict[str, float]:
        """Metrics of decoded predictions against the records' gold labels."""
        return {}

    # ---- unsupervised tasks ---------------------------------------------------------------
    def fit(self, **context: Any) -> Any:
        """Fit a task with ``supervised = False``; returns a run object (see the topics plugin)."""
        raise NotImplementedError(f"task {self.name!r} is supervised; it is trained by the Trainer")

    # ---- export ---------------------------------------------------------------------------
    def export_hf(self, model: TaskModel) -> HFExport:
        """The transformers model equal to *model* (``run.export(dir, format="hf")``).

        *model* is the trained :class:`~tunekit.taskmodel.TaskModel` with adapters already
        merged and the encoder's last layer as representation. Return a
        :class:`tunekit.export.HFExport`: an ``AutoModelFor...`` instance holding the same
        weights, the ``transformers.pipeline`` task that loads it, and a ``check`` that core
        runs on a probe batch. Core saves the model with the tokenizer. Build it with
        :func:`tunekit.export.sequence_classification`,
        :func:`~tunekit.export.token_classification` or
        :func:`~tunekit.export.feature_extraction`; raise :class:`~tunekit.errors.ExportError`
        when the head has no exact transformers equivalent (say which options would have one).

        The default refuses: a task is exportable only when it says how.
        """
        raise ExportError(
            f"task {self.name!r} cannot be exported to transformers: it does not implement Task.export_hf. "
            f"Save a bundle instead (run.save), or export the encoder alone (run.export_encoder)"
        )

    # ---- persistence ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-serialisable state learned in :meth:`setup` (saved in bundles)."""
        return {"schema": self.schema.to_dict() if self.schema else None}

    def load_state(self, state: Mapping[str, Any]) -> None:
        schema = state.get("schema")
        self.schema = LabelSchema.from_dict(schema) if schema else None

    def require_schema(self) -> LabelSchema:
        if self.schema is None:
            raise ConfigError(
                f"task {self.name!r} has no label schema yet; call setup() on training records"
            )
        return self.schema


def default_collate(features: Sequence[Feature], tokenizer: Any) -> dict[str, torch.Tensor]:
    """Pad encoder inputs with the tokenizer; stack or pad (with -100) everything else numeric.

    Keys starting with ``_`` and non-numeric values are skipped.
    """
    inputs = [{k: f[k] for k in ENCODER_INPUTS if k in f} for f in features]
    batch = dict(tokenizer.pad(inputs, return_tensors="pt"))
    for key in features[0]:
        if key in ENCODER_INPUTS or key.startswith("_") or key == "example_index":
            continue
        values = [f[key] for f in features]
        first = values[0]
        if isinstance(first, (str, type(None))):
            continue
        if isinstance(first, (list, tuple, np.ndarray)) and len({len(v) for v in values}) > 1:
            batch[key] = pad_sequences(values, pad_value=-100)
        else:
            batch[key] = torch.as_tensor(np.asarray(values))
    return batch


def pad_sequences(
    values: Sequence[Sequence[Any]], *, pad_value: float = -100, length: int | None = None
) -> torch.Tensor:
    """Right-pad ragged sequences into one tensor (``-100`` is ignored by cross-entropy)."""
    length = length or max(len(v) for v in values)
    dtype = (
        torch.float32 if any(isinstance(x, float) for v in values for x in v[:1]) else torch.long
    )
    out = torch.full((len(values), length), pad_value, dtype=dtype)
    for i, v in enumerate(values):
        out[i, : len(v)] = torch.as_tensor(v[:length], dtype=dtype)
    return out
