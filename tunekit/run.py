"""The result of ``finetune()`` and ``load()``: a trained model you can use and save."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import attrs

from .config import TrainingConfig
from .history import History
from .inference import RECORDS_PER_CHUNK, compute_outputs
from .log import quiet_libraries
from .strategy import Strategy
from .task import Record, Task
from .taskmodel import TaskModel

#: ``predict()`` / ``evaluate()`` on this many records or more show progress
PROGRESS_MIN_RECORDS = 256


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
        #: where ``finetune(output_dir=...)`` saved the bundle, else ``None``
        self.bundle_path: str | None = None
        #: the records ``finetune()`` held out for evaluation (the default data of the gates of
        #: ``run.export(dir, format="onnx")``); empty for a loaded run
        self.eval_records: list[Record] = []

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

    @quiet_libraries()
    def predict(self, inputs: Any, *, batch_size: int | None = None, **options: Any) -> Any:
        """Predict for one input or a list of inputs (what a task accepts: texts, pairs...).

        A single input gives a single prediction; a list gives a list. *options* go to the
        task's decoder (``threshold=``, ``top_k=``...), except the task's column options
        (``text_column=``, ``text_columns=``...): with those, or when *inputs* is a table (a
        DataFrame, a 🤗 Dataset, or a ``pathlib.Path`` to a CSV/TSV/JSON Lines/Parquet file),
        each row's input is read from the named columns — by default the columns the model
        was trained on, else the usual names (``text``, ``review``...).

        Example::

            run.predict(["what a wonderful film", "a dull mess"])
            run.predict(pandas.read_csv("test.csv"), text_column="review")
        """
        columns = self._column_options(options, what="predict")
        if columns or _is_table(inputs):
            inputs = self._table_inputs(inputs, columns)
        single = _is_single(inputs)
        records = self.task.parse_inputs([inputs] if single else inputs)
        if not records:
            return []
        predictions = self._decode(
            records, with_labels=False, batch_size=batch_size, options=options
        )[0]
        return predictions[0] if single else predictions

    # ---- column mapping (evaluate / predict on data named otherwise than in training) -----
    def column_options(self) -> tuple[str, ...]:
        """The task's options that name data columns (``text_column``, ``label_column``,
        ``text_columns``...): ``evaluate()`` and ``predict()`` take them too."""
        return (
            tuple(
                f.name
                for f in attrs.fields(type(self.task.config))
                if f.name.endswith(("_column", "_columns"))
            )
            if attrs.has(type(self.task.config))
            else ()
        )

    def _column_options(self, options: dict[str, Any], *, what: str) -> dict[str, Any]:
        known = self.column_options()
        return {k: options.pop(k) for k in list(options) if k in known}

    def _task_with(self, columns: dict[str, Any]) -> Task:
        """The task reading data through *columns* (a copy; the run's task is unchanged)."""
        import copy

        if not columns:
            return self.task
        task = copy.copy(self.task)
        task.config = attrs.evolve(self.task.config, **columns)
        return task

    def _read(self, data: Any, columns: dict[str, Any]) -> list[dict[str, Any]]:
        """Records of labelled *data*: through *columns*, else the training columns, else —
        when the training columns are not in *data* — the task's auto-detected ones."""
        from .errors import DataError

        task = self._task_with(columns)
        try:
            return task.read(data, name="data")
        except DataError as exc:
            trained = {
                k: None
                for k in self.column_options()
                if k not in columns and getattr(task.config, k) is not None
            }
            if not trained or "column" not in str(exc):
                raise
            try:
                return self._task_with({**columns, **trained}).read(data, name="data")
            except DataError:
                names = ", ".join(f"{k}=" for k in self.column_options())
                flags = ", ".join("--" + k.replace("_", "-") for k in self.column_options())
                raise DataError(
                    f"{exc}. The model was trained with "
                    f"{', '.join(f'{k}={getattr(self.task.config, k)!r}' for k in trained)}; name the "
                    f"columns of this data with {names} (CLI: {flags})"
                ) from None

    def _table_inputs(self, inputs: Any, columns: dict[str, Any]) -> list[Any]:
        from .data import find_column, read_table
        from .errors import DataError

        if isinstance(inputs, os.PathLike):
            inputs = os.fspath(inputs)
        elif not _is_table(inputs) and not isinstance(inputs, list):
            raise DataError(
                f"predict() with {', '.join(sorted(columns))}= reads rows: pass a list of dicts, a "
                f"DataFrame, a Dataset or a pathlib.Path to a table file"
            )
        rows = read_table(inputs, name="predict input")
        config = self._task_with(columns).config
        if "text_column" in self.column_options():
            from .data import TEXT_COLUMNS

            column_names = list(rows[0])
            wanted = config.text_column if config.text_column in column_names else None
            if "text_column" in columns:
                wanted = columns["text_column"]
            col = find_column(
                column_names,
                wanted,
                TEXT_COLUMNS,
                role="text",
                name="predict input",
                option="text_column",
            )
            return [row.get(col) for row in rows]
        if "text_columns" in self.column_options() and config.text_columns:
            a, b = config.text_columns
            return [(row.get(a), row.get(b)) for row in rows]
        return rows

    def _decode(
        self, records, *, with_labels: bool, batch_size: int | None, options: dict[str, Any]
    ):
        check_batch_size(batch_size)
        # Records go through encode → model → decode a chunk at a time, so the features and
        # the kept outputs of only one chunk are in memory, however large the data.
        predictions: list[Any] = []
        loss_total, loss_n = 0.0, 0
        progress = self._progress(len(records), "evaluate" if with_labels else "predict")
        for start in range(0, len(records), RECORDS_PER_CHUNK):
            chunk = records[start : start + RECORDS_PER_CHUNK]
            features = self.task.encode(
                chunk, self.tokenizer, max_length=self.training.max_length, with_labels=with_labels
            )
            if progress is not None:
                progress.chunk(len(chunk), len(features))
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
                on_batch=progress,
            )
            predictions += self.task.decode(outputs, features, chunk, **options)
            if loss is not None:
                loss_total, loss_n = loss_total + loss * len(features), loss_n + len(features)
        if progress is not None:
            progress.close()
        return predictions, (loss_total / loss_n if loss_n else None)

    def _progress(self, total: int, what: str) -> Any:
        """Progress of a long ``predict()`` / ``evaluate()`` (at least
        :data:`PROGRESS_MIN_RECORDS` records): a bar on a terminal, a line every 30 s
        otherwise; the ``progress`` training option (``False``) turns it off."""
        from .hardware import is_main_process as _is_main_process
        from .progress import progress_mode

        if total < PROGRESS_MIN_RECORDS:
            return None
        mode = progress_mode(self.training.progress, main=_is_main_process())
        return None if mode == "off" else _RecordProgress(total=total, mode=mode, desc=what)

    @quiet_libraries()
    def evaluate(
        self, data: Any, *, batch_size: int | None = None, **columns: Any
    ) -> dict[str, float]:
        """Metrics (and ``eval_loss``) of the model on labelled *data* (any accepted source).

        *columns* name the data's columns as in ``finetune()`` (``text_column=``,
        ``label_column=``...; :meth:`column_options` lists them). By default the columns the
        model was trained on are read, and when *data* has none of those names, the usual
        ones (``text``, ``label``...) are detected.

        Example::

            run.evaluate("test.csv", text_column="review", label_column="sentiment")
        """
        unknown = sorted(set(columns) - set(self.column_options()))
        if unknown:
            from .errors import ConfigError, close_matches_hint

            raise ConfigError(
                f"evaluate() takes the column options {', '.join(self.column_options()) or '(none)'} "
                f"of task {self.task.name!r}, not {', '.join(unknown)}"
                f"{close_matches_hint(unknown[0], self.column_options())}"
            )
        records = self._read(data, columns)
        predictions, loss = self._decode(
            records, with_labels=True, batch_size=batch_size, options={}
        )
        metrics = {"eval_loss": loss} if loss is not None else {}
        metrics.update(self.task.metrics(predictions, records))
        return metrics

    def save(self, path: str | os.PathLike, **options: Any) -> str:
        """Write a verified bundle directory (atomically); returns its path.

        *path* must be absent, empty or an earlier bundle (replaced whole); a directory of
        other files is refused (:class:`~tunekit.errors.BundleError`), nothing deleted.
        Options: ``merged=True`` (a standalone bundle, adapters folded in) and
        ``sign_key=...`` (an HMAC-SHA256 signature that ``tunekit.load(verify_key=...)``
        checks).

        Example::

            run.save("out/sentiment", sign_key=open("team.key", "rb").read())
        """
        from .bundle import save_bundle

        with quiet_libraries():
            return save_bundle(self, path, **options)

    def export(self, path: str | os.PathLike, *, format: str = "hf", **options: Any) -> str:
        """Write the run as a 🤗 transformers model that ``transformers.pipeline`` loads with
        the same predictions: adapters merged in, the task head mapped onto the matching
        ``AutoModelFor...`` class's head (``id2label`` / ``label2id`` in its config), the
        tokenizer, a model card and ``tunekit_export.json`` (the pipeline task and options).

        ``format="onnx"`` writes a verified ONNX graph of the whole model (any task, head
        and strategy; see :func:`tunekit.onnx_export.export_onnx` for *options*:
        ``records=``, ``atol=``, ``min_agreement=``, ``quantize="int8"`` or
        ``"int8-per-tensor"``, ``max_drop=``)
        that ``tunekit.load()`` serves through onnxruntime. For ``format="hf"``, a head with no exact transformers equivalent (mean pooling, a CRF, a layer mix...)
        is an :class:`~tunekit.errors.ExportError` naming the options that would export.
        See the "Export to transformers" section of the docs for each task.

        Example::

            run = tunekit.finetune("classify", data="reviews.csv", head="mlp", hidden=[384],
                                   activation="tanh", pooling="cls", strategy="lora")
            run.export("out/hf")
            from transformers import pipeline
            pipeline("text-classification", model="out/hf")("what a wonderful film")
        """
        from .errors import ExportError
        from .export import export_run

        try:
            with quiet_libraries():
                return export_run(self, path, format=format, **options)
        except ExportError as exc:
            if format != "hf" or "format='onnx'" in str(exc):
                raise
            raise ExportError(
                f"{exc}. Or export the model as trained, whatever its head: format='onnx' "
                f"(CLI: tunekit export BUNDLE DIR --format onnx)"
            ) from None

    def export_encoder(self, path: str | os.PathLike) -> str:
        """Write the trained encoder (adapters merged in, head dropped) and the tokenizer as a
        transformers ``save_pretrained`` directory: ``AutoModel.from_pretrained(path)`` and
        ``finetune(model=path)`` load it. (A bundle directory works as ``model=`` too.)
        ``tunekit_export.json`` records the files written, so a later export may replace
        them; a directory holding anything else is refused, never emptied.

        Example::

            run = tunekit.finetune(task="fill-mask", data="corpus.txt")
            run.export_encoder("out/adapted-encoder")
            tunekit.finetune(task="classify", model="out/adapted-encoder", data="reviews.csv")
        """
        import json
        from pathlib import Path

        from .atomic import EXPORT_RECORD, atomic_directory, check_save_target, list_files

        check_save_target(path)  # before merging: refuse a folder of the user's files
        encoder = self.strategy.merged_model(self.model).encoder
        with atomic_directory(Path(path), protect=True) as tmp:
            encoder.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            files = [*list_files(tmp), EXPORT_RECORD]
            record = {"export": "encoder", "task": self.task.name, "files": files}
            (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        return str(path)

    def plot(self, path: str | os.PathLike, *, metric: str | None = None) -> str:
        """Draw the learning curve (train vs eval loss, and a metric, per epoch) to *path*,
        plus the learned layer weights when the run has them (``layer-mix``).

        *metric* is a metric column of :attr:`history` (default: its first); another name is
        a :class:`~tunekit.errors.ConfigError` listing the metrics the run has.

        Example::

            run.plot("plots/curve.png", metric="macro_f1")
        """
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


class _RecordProgress:
    """Progress in records, fed the features done batch by batch (a record may give
    several features: windows of a long text)."""

    def __init__(self, *, total: int, mode: str, desc: str) -> None:
        from .progress import Progress

        self.progress = Progress(total=total, mode=mode, desc=desc)
        self.per_feature, self.done, self.shown = 1.0, 0.0, 0

    def chunk(self, records: int, features: int) -> None:
        self.per_feature = records / max(features, 1)

    def __call__(self, features: int) -> None:
        self.done += features * self.per_feature
        step = round(self.done) - self.shown
        if step > 0:
            self.shown += step
            self.progress.update(step)

    def close(self) -> None:
        self.progress.close()


def _is_table(inputs: Any) -> bool:
    """A DataFrame, a 🤗 Dataset or a ``pathlib.Path`` (a str is a text to predict)."""
    from .data import _is_dataframe, _is_dataset

    return isinstance(inputs, os.PathLike) or _is_dataframe(inputs) or _is_dataset(inputs)


def embedding_similarity(
    encode: Any, a: str | Sequence[str], b: str | Sequence[str], *, batch_size: int | None = None
) -> Any:
    """Cosine similarity of the embeddings ``encode(texts, batch_size=)`` gives *a* and *b*
    (unit vectors): two strings give a float, two equally long lists one value per position
    (an array). What ``PairRun.similarity`` and a served bi-encoder's ``similarity`` run.

    Example::

        embedding_similarity(run.encode, "how old are you", "what is your age")   # 0.93
    """
    from .errors import DataError

    if isinstance(a, str) != isinstance(b, str):
        raise DataError(
            "similarity(a, b) takes two strings or two lists of strings of the same length"
        )
    if isinstance(a, str):
        return float(encode([a, b], batch_size=batch_size).prod(0).sum())
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise DataError(
            f"similarity(a, b) got {len(a)} and {len(b)} texts; pass lists of the same length"
        )
    vectors = encode(a + b, batch_size=batch_size)
    return (vectors[: len(a)] * vectors[len(a) :]).sum(-1)


def check_batch_size(batch_size: Any, *, option: str = "batch_size") -> None:
    """Refuse a ``batch_size`` of ``predict()`` / ``evaluate()`` (or ``--batch-size``) that
    is not ``None`` or a whole number >= 1, naming the option (*option*)."""
    import numbers

    from .errors import ConfigError

    if batch_size is None:
        return
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool):
        raise ConfigError(
            f"{option}={batch_size!r} must be a whole number (int) >= 1, not "
            f"{type(batch_size).__name__}; e.g. {option}=32, or leave it out"
        )
    if batch_size < 1:
        raise ConfigError(
            f"{option}={batch_size!r} must be >= 1 (records run through the model at a time); "
            f"e.g. {option}=32, or leave it out"
        )


def _is_single(inputs: Any) -> bool:
    if isinstance(inputs, (str, dict)):
        return True
    if isinstance(inputs, tuple) and inputs and all(isinstance(x, str) for x in inputs):
        return True  # one text pair
    return not isinstance(inputs, Sequence)
