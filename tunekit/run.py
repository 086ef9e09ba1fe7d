"""The result of ``finetune()`` and ``load()``: a trained model you can use and save."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .config import TrainingConfig
from .history import History
from .inference import compute_outputs
from .strategy import Strategy
from .task import Task
from .taskmodel import TaskModel

#: records encoded, run and decoded at a time by ``predict()`` / ``evaluate()``
RECORDS_PER_CHUNK = 2048


class Run:
    """A trained task model: ``history``, ``metrics``, ``predict()``, ``evaluate()``,
    ``save()``, ``plot()``.

    Example::

        run = tunekit.finetune(task="classify", data="reviews.csv")
        print(run.history)
        run.predict(["what a wonderful film"])
        run.save("out/sentiment")
    """

    def __init__(
        self,
        *,
        task: Task,
        strategy: Strategy,
        model: TaskModel,
        tokenizer: Any,
        training: TrainingConfig,
        backbone: dict[str, Any],
        history: History | None = None,
        metrics: dict[str, float] | None = None,
        precision: str = "fp32",
    ) -> None:
        self.task = task
        self.strategy = strategy
        self.model = model
        self.tokenizer = tokenizer
        self.training = training
        self.backbone = backbone
        self.history = history or History()
        self.metrics = dict(metrics or {})
        self.precision = precision

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items() if isinstance(v, float))
        return f"<tunekit.Run task={self.task.name!r} strategy={self.strategy.name!r} model={self.backbone.get('name')!r} {shown}>"

    @property
    def layer_weights(self) -> list[float] | None:
        """The learned weight of each hidden state (embeddings first, then layer 1..n) when
        the head reads a layer mix (``strategy="layer-mix"``), else ``None``."""
        weights = getattr(self.model.representation, "layer_weights", None)
        return weights() if callable(weights) else None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.task.schema.labels if self.task.schema else ()

    def predict(self, inputs: Any, *, batch_size: int | None = None, **options: Any) -> Any:
        """Predict for one input or a list of inputs (what a task accepts: texts, pairs...).

        A single input gives a single prediction; a list gives a list. *options* go to the
        task's decoder (``threshold=``, ``top_k=``...).
        """
        single = _is_single(inputs)
        records = self.task.parse_inputs([inputs] if single else inputs)
        if not records:
            return []
        predictions = self._decode(
            records, with_labels=False, batch_size=batch_size, options=options
        )[0]
        return predictions[0] if single else predictions

    def _decode(
        self, records, *, with_labels: bool, batch_size: int | None, options: dict[str, Any]
    ):
        # Records go through encode → model → decode a chunk at a time, so the features and
        # the kept outputs of only one chunk are in memory, however large the data.
        predictions: list[Any] = []
        loss_total, loss_n = 0.0, 0
        for start in range(0, len(records), RECORDS_PER_CHUNK):
            chunk = records[start : start + RECORDS_PER_CHUNK]
            features = self.task.encode(
                chunk, self.tokenizer, max_length=self.training.max_length, with_labels=with_labels
            )
            outputs, loss = compute_outputs(
                self.model,
                self.task,
                self.tokenizer,
                features,
                batch_size=batch_size
                or self.training.eval_batch_size
                or 2 * self.training.batch_size,
                precision=self.precision,
                with_loss=with_labels,
            )
            predictions += self.task.decode(outputs, features, chunk, **options)
            if loss is not None:
                loss_total, loss_n = loss_total + loss * len(features), loss_n + len(features)
        return predictions, (loss_total / loss_n if loss_n else None)

    def evaluate(self, data: Any, *, batch_size: int | None = None) -> dict[str, float]:
        """Metrics (and ``eval_loss``) of the model on labelled *data* (any accepted source)."""
        records = self.task.read(data, name="data")
        predictions, loss = self._decode(
            records, with_labels=True, batch_size=batch_size, options={}
        )
        metrics = {"eval_loss": loss} if loss is not None else {}
        metrics.update(self.task.metrics(predictions, records))
        return metrics

    def save(self, path: str | os.PathLike, **options: Any) -> str:
        """Write a verified bundle directory (atomically); returns its path."""
        from .bundle import save_bundle

        return save_bundle(self, path, **options)

    def export(self, path: str | os.PathLike, *, format: str = "hf") -> str:
        """Write the run as a 🤗 transformers model that ``transformers.pipeline`` loads with
        the same predictions: adapters merged in, the task head mapped onto the matching
        ``AutoModelFor...`` class's head (``id2label`` / ``label2id`` in its config), the
        tokenizer, a model card and ``tunekit_export.json`` (the pipeline task and options).

        ``format="onnx"`` converts that through 🤗 optimum (``pip install optimum[onnx]``).
        A head with no exact transformers equivalent (mean pooling, a CRF, a layer mix...)
        is an :class:`~tunekit.errors.ExportError` naming the options that would export.
        See the "Export to transformers" section of the docs for each task.

        Example::

            run = tunekit.finetune("classify", data="reviews.csv", head="mlp", hidden=[384],
                                   activation="tanh", pooling="cls", strategy="lora")
            run.export("out/hf")
            from transformers import pipeline
            pipeline("text-classification", model="out/hf")("what a wonderful film")
        """
        from .export import export_run

        return export_run(self, path, format=format)

    def export_encoder(self, path: str | os.PathLike) -> str:
        """Write the trained encoder (adapters merged in, head dropped) and the tokenizer as a
        transformers ``save_pretrained`` directory: ``AutoModel.from_pretrained(path)`` and
        ``finetune(model=path)`` load it. (A bundle directory works as ``model=`` too.)

        Example::

            run = tunekit.finetune(task="fill-mask", data="corpus.txt")
            run.export_encoder("out/adapted-encoder")
            tunekit.finetune(task="classify", model="out/adapted-encoder", data="reviews.csv")
        """
        from pathlib import Path

        from .atomic import atomic_directory

        encoder = self.strategy.merged_model(self.model).encoder
        with atomic_directory(Path(path)) as tmp:
            encoder.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
        return str(path)

    def plot(self, path: str | os.PathLike, *, metric: str | None = None) -> str:
        """Draw the learning curve (train vs eval loss, and a metric, per epoch) to *path*,
        plus the learned layer weights when the run has them (``layer-mix``)."""
        from .plots import plot_history

        return plot_history(self.history, path, metric=metric, layer_weights=self.layer_weights)

    def confusion(self, data: Any, *, batch_size: int | None = None) -> tuple[list[str], list[str]]:
        """``(gold, predicted)`` labels of labelled *data* (single-label classification
        tasks: ``classify``, ``pair-sim``, ``pair-cls``...)."""
        from .errors import ConfigError

        schema = self.task.schema
        if schema is None or schema.kind != "single_label":
            kind = schema.kind if schema is not None else "no label schema"
            raise ConfigError(
                f"a confusion matrix needs a single-label classification task; task {self.task.name!r} has "
                f"{kind!r} labels"
            )
        records = self.task.read(data, name="data")
        if not all("label" in r for r in records):
            raise ConfigError(
                f"a confusion matrix needs one label per record; task {self.task.name!r} labels records otherwise "
                f"(e.g. one tag per word)"
            )
        predictions = self._decode(records, with_labels=False, batch_size=batch_size, options={})[0]
        return [str(r["label"]) for r in records], [str(p["label"]) for p in predictions]

    def plot_confusion(
        self, path: str | os.PathLike, data: Any, *, normalize: str | None = None
    ) -> str:
        """Draw the confusion matrix of the model on labelled *data* (any source
        ``evaluate()`` takes) to *path*: rows are true labels, columns predicted ones, in the
        schema's order; ``normalize="true"`` shows each row's fractions (recall per label).

        Example::

            run.plot_confusion("plots/confusion.png", data="dev.csv", normalize="true")
        """
        from .plots import plot_confusion

        gold, predicted = self.confusion(data)
        return plot_confusion(gold, predicted, self.labels, path, normalize=normalize)


def _is_single(inputs: Any) -> bool:
    if isinstance(inputs, (str, dict)):
        return True
    if isinstance(inputs, tuple) and inputs and all(isinstance(x, str) for x in inputs):
        return True  # one text pair
    return not isinstance(inputs, Sequence)
