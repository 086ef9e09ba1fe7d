"""Test helpers for tunekit and plugin authors.

``make_tiny_model`` builds a tiny randomly initialised BERT (or ERNIE) with a vocabulary
made from your texts and saves it like a hub model, so tests run offline in seconds and
go through exactly the loading path a real checkpoint takes.

``check_task`` / :class:`TaskContract` are the contract every task must pass: it is
registered under a unique name, encodes records into features with ``example_index``,
trains with every registered strategy (finite, falling loss), saves and loads back to
identical predictions, predicts one result per input, and rejects empty data with a
:class:`~tunekit.errors.DataError`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .task import Task

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _pieces(text: str, chinese: bool) -> list[str]:
    text = text.lower()
    if chinese:
        return [c for c in text if not c.isspace()]
    return re.findall(r"\w+|[^\w\s]", text)


def make_tiny_model(
    path: str | os.PathLike,
    texts: Iterable[str] = (),
    *,
    model_type: str = "bert",
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_position_embeddings: int = 128,
    chinese: bool = False,
    seed: int = 0,
) -> str:
    """Save a tiny random ``bert``/``ernie`` encoder + WordPiece tokenizer at *path*.

    The vocabulary holds the special tokens, every word (or every character when
    *chinese*) of *texts*, and the ASCII letters and digits so nothing is ``[UNK]``-only.

    Example::

        path = make_tiny_model(tmp_path / "tiny", ["good film", "bad film"])
        run = tunekit.finetune(task="classify", model=path, data=records)
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, None] = dict.fromkeys(SPECIAL_TOKENS)
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-":
        vocab.setdefault(ch, None)
    for text in texts:
        for piece in _pieces(text, chinese):
            vocab.setdefault(piece, None)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    import inspect

    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    else:
        tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = max_position_embeddings
    tokenizer.save_pretrained(path)
    common = dict(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=max_position_embeddings,
        type_vocab_size=2,
    )
    torch.manual_seed(seed)
    if model_type == "ernie":
        from transformers import ErnieConfig, ErnieModel

        model = ErnieModel(ErnieConfig(**common))
    elif model_type == "bert":
        model = BertModel(BertConfig(**common))
    else:
        raise ValueError(f"model_type must be 'bert' or 'ernie', not {model_type!r}")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(path)
    return str(path)


# ---- the task contract ------------------------------------------------------------------

#: Training options the contract uses unless told otherwise: a few epochs over the same
#: records at a high learning rate, so a working task's loss falls within seconds.
CONTRACT_TRAINING: dict[str, Any] = {
    "epochs": 6,
    "learning_rate": 1e-2,
    "batch_size": 8,
    "max_length": 32,
    "eval_split": 0,
    "progress": False,
    "seed": 0,
}

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class ContractError(AssertionError):
    """A task broke the plugin contract; the message names the check, the task and the fix.

    It is an :class:`AssertionError`, so pytest reports it like a failed ``assert``.
    """


@dataclass
class StrategyResult:
    """What training one strategy in :func:`check_task` gave."""

    strategy: str
    losses: list[float]
    seconds: float
    stores_encoder: bool


@dataclass
class ContractReport:
    """What :func:`check_task` checked: the task, its plugin, and one result per strategy."""

    task: str
    plugin: str
    num_records: int
    num_features: int
    strategies: dict[str, StrategyResult] = field(default_factory=dict)


def registered_strategies() -> list[str]:
    """The names of every registered strategy (built-in and from plugins)."""
    from .plugins import get_state

    return get_state().strategies.names()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


class TaskChecker:
    """Runs the contract checks of one task one at a time (:func:`check_task` runs them all).

    *task* is a registered task name or a :class:`~tunekit.Task` subclass; *records* are
    labelled training records in any form the task's ``read()`` accepts (a list of dicts is
    best); *predict_inputs* is a list of what ``run.predict()`` accepts. *options* are task
    options, *strategy_options* maps a strategy name to its options, *training* overrides
    :data:`CONTRACT_TRAINING`. Without *model_path* a tiny model is built from the strings
    in *records* and *predict_inputs* (a character vocabulary when they hold Chinese).
    """

    def __init__(
        self,
        task: str | type[Task],
        records: Any,
        *,
        predict_inputs: Sequence[Any],
        model_path: str | os.PathLike | None = None,
        options: Mapping[str, Any] | None = None,
        strategy_options: Mapping[str, Mapping[str, Any]] | None = None,
        training: Mapping[str, Any] | None = None,
        workdir: str | os.PathLike | None = None,
    ) -> None:
        self.task: str | type[Task] = task
        self.records = records
        self.predict_inputs = list(predict_inputs)
        self.options = dict(options or {})
        self.strategy_options = {k: dict(v) for k, v in (strategy_options or {}).items()}
        self.training = {**CONTRACT_TRAINING, **(training or {})}
        self._model_path = os.fspath(model_path) if model_path is not None else None
        self._workdir = Path(workdir) if workdir is not None else None
        self._tmp: tempfile.TemporaryDirectory | None = None
        if not self.predict_inputs:
            raise ValueError("predict_inputs must hold at least one input")

    # ---- helpers -----------------------------------------------------------------------
    @property
    def task_cls(self) -> type[Task]:
        from .plugins import get_state

        if isinstance(self.task, str):
            return get_state().tasks.get(self.task)
        return self.task

    @property
    def name(self) -> str:
        return self.task_cls.name

    def workdir(self) -> Path:
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tunekit-contract-")
            self._workdir = Path(self._tmp.name)
        self._workdir.mkdir(parents=True, exist_ok=True)
        return self._workdir

    def model_path(self) -> str:
        """The tiny model the checks train (built once from the records' texts)."""
        if self._model_path is None:
            texts = [*_strings(self.records), *_strings(self.predict_inputs)]
            chinese = any(_CJK.search(t) for t in texts)
            self._model_path = make_tiny_model(
                self.workdir() / "tiny-model", texts, chinese=chinese
            )
        return self._model_path

    def new_task(self) -> Any:
        from .config import build_config

        cls = self.task_cls
        return cls(build_config(cls.Config, self.options, owner=f"task {cls.name!r}"))

    def _fail(self, check: str, message: str) -> ContractError:
        return ContractError(f"task {self.name!r} fails the contract check {check!r}: {message}")

    # ---- checks ------------------------------------------------------------------------
    def check_registered(self) -> str:
        """The task class is registered under its ``name`` (and aliases), by one plugin, and
        no other registered task claims it. Returns the plugin's name."""
        from .plugins import get_state
        from .task import Task

        cls = self.task_cls
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise self._fail("registered", f"{cls!r} is not a tunekit.Task subclass")
        if not isinstance(cls.name, str) or not cls.name.strip():
            raise ContractError(
                f"task class {cls.__qualname__} has no `name`; set name = 'my-task'"
            )
        tasks = get_state().tasks
        if cls.name not in tasks:
            raise self._fail(
                "registered",
                "no plugin registers it. Register it in a `tunekit_register_tasks` hook and install "
                "the plugin (its entry point in group 'tunekit'): pip install -e .",
            )
        registered = tasks.get(cls.name)
        if registered is not cls:
            raise self._fail(
                "registered",
                f"the name is registered to {registered.__module__}.{registered.__qualname__}, "
                f"not to {cls.__module__}.{cls.__qualname__}",
            )
        for alias in cls.aliases:
            if tasks.canonical(alias) != cls.name:
                raise self._fail(
                    "registered", f"alias {alias!r} resolves to task {tasks.canonical(alias)!r}"
                )
        others = [n for n in tasks.names() if n != cls.name and tasks.get(n) is cls]
        if others:
            raise self._fail(
                "registered", f"the same class is also registered as {others}; register it once"
            )
        return tasks.owner(cls.name)

    def check_encode(self) -> tuple[list[dict], list[dict]]:
        """read() + setup() + encode() give features with ``input_ids`` and an integer
        ``example_index`` pointing at their record (every record has one), and collate()
        pads them into a batch of tensors. Returns (records, features)."""
        import torch

        from .assembly import load_backbone

        task = self.new_task()
        records = task.read(self.records, name="data")
        if not isinstance(records, list) or not records:
            raise self._fail(
                "encode",
                f"read() returned {type(records).__name__} {records!r:.80}, not a list of records",
            )
        task.setup(records)
        tokenizer = load_backbone(self.model_path()).tokenizer
        features = task.encode(
            records, tokenizer, max_length=self.training["max_length"], with_labels=True
        )
        if not features:
            raise self._fail("encode", "encode() returned no features")
        covered = set()
        for i, feat in enumerate(features):
            if "input_ids" not in feat:
                raise self._fail("encode", f"feature {i} has no input_ids (keys: {sorted(feat)})")
            index = feat.get("example_index")
            if (
                not isinstance(index, int)
                or isinstance(index, bool)
                or not 0 <= index < len(records)
            ):
                raise self._fail(
                    "encode",
                    f"feature {i} has example_index={index!r}; every feature needs the int index of its "
                    f"record (0..{len(records) - 1})",
                )
            covered.add(index)
        missing = sorted(set(range(len(records))) - covered)
        if missing:
            raise self._fail("encode", f"records {missing[:10]} gave no feature")
        batch = task.collate(features[:2], tokenizer)
        bad = [k for k, v in batch.items() if not isinstance(v, torch.Tensor)]
        if bad or "input_ids" not in batch:
            raise self._fail(
                "encode",
                f"collate() must give tensors incl. input_ids; got {sorted(batch)} (not tensors: {bad})",
            )
        return records, features

    def check_bad_input(self) -> None:
        """Empty training data is a :class:`DataError` (from ``read()`` and ``finetune()``)
        whose message names the argument."""
        from .api import finetune
        from .errors import DataError

        for what, call in (
            ("read([])", lambda: self.new_task().read([], name="data")),
            (
                "finetune(data=[])",
                lambda: finetune(
                    self.name, data=[], model=self.model_path(), **self._train_opts("full")
                ),
            ),
        ):
            try:
                call()
            except DataError as exc:
                if "data" not in str(exc):
                    raise self._fail(
                        "bad input", f"{what} raised DataError without naming 'data': {exc}"
                    ) from exc
            except Exception as exc:
                raise self._fail(
                    "bad input",
                    f"{what} raised {type(exc).__name__}: {exc}; empty data must raise tunekit.DataError",
                ) from exc
            else:
                raise self._fail(
                    "bad input", f"{what} did not raise; empty data must raise tunekit.DataError"
                )

    def strategies(self) -> list[str]:
        """Every registered strategy's name."""
        return registered_strategies()

    def _train_opts(self, strategy: str) -> dict[str, Any]:
        return {
            **self.training,
            **self.options,
            **self.strategy_options.get(strategy, {}),
            "strategy": strategy,
        }

    def check_strategy(self, strategy: str) -> StrategyResult:
        """Train with *strategy* on the tiny model: every epoch's loss is finite and it falls;
        ``predict()`` gives one result per input; a saved bundle loads back to identical
        predictions and bitwise-equal model outputs."""
        import time

        import numpy as np
        import torch

        from .api import finetune, load
        from .errors import TrainingError

        torch.manual_seed(0)  # the head's initialisation
        start = time.perf_counter()
        try:
            run = finetune(
                self.name, data=self.records, model=self.model_path(), **self._train_opts(strategy)
            )
        except TrainingError as exc:
            raise self._fail(f"train[{strategy}]", f"training failed: {exc}") from exc
        seconds = time.perf_counter() - start
        head = run.model.head
        level = getattr(head, "level", "")
        if level not in self.task_cls.head_levels:
            raise self._fail(
                f"head[{strategy}]",
                f"build_head() gave {type(head).__name__} with level={level!r}, but the task takes "
                f"head_levels={self.task_cls.head_levels!r}; set the head class's level (one of "
                f"sequence, token, span, lm) or the task's head_levels",
            )
        losses = [float(v) for v in run.history.column("train_loss") if v is not None]
        if self.task_cls.supervised:
            if len(losses) < 2:
                raise self._fail(
                    f"train[{strategy}]",
                    f"history has {len(losses)} train_loss values; need one per epoch",
                )
            if not all(np.isfinite(losses)):
                raise self._fail(f"train[{strategy}]", f"loss is not finite: {losses}")
            first, last = (
                (losses[:2], losses[-2:]) if len(losses) >= 4 else (losses[:1], losses[-1:])
            )
            if not np.mean(last) < np.mean(first):
                raise self._fail(
                    f"train[{strategy}]",
                    f"the loss did not fall over {len(losses)} epochs on repeated data: {losses}. "
                    f"Check loss() and the head; or pass training={{'learning_rate': ...}}",
                )
        predictions = run.predict(self.predict_inputs)
        if not isinstance(predictions, list) or len(predictions) != len(self.predict_inputs):
            got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
            raise self._fail(
                f"predict[{strategy}]",
                f"predict() of {len(self.predict_inputs)} inputs gave {got} predictions",
            )
        before = self._outputs(run)
        path = run.save(self.workdir() / f"bundle-{strategy}")
        back = load(path, device="cpu")
        if back.task.name != self.name or back.strategy.name != strategy:
            raise self._fail(
                f"round trip[{strategy}]",
                f"loaded task/strategy {back.task.name!r}/{back.strategy.name!r}",
            )
        after = self._outputs(back)
        for i, (a, b) in enumerate(zip(before, after)):
            if sorted(a) != sorted(b) or any(not np.array_equal(a[k], b[k]) for k in a):
                raise self._fail(
                    f"round trip[{strategy}]",
                    f"the loaded bundle's outputs for input {i} differ from the trained model's; "
                    "state()/load_state() or build_head() do not restore the same model",
                )
        if back.predict(self.predict_inputs) != predictions:
            raise self._fail(f"round trip[{strategy}]", "the loaded bundle predicts differently")
        return StrategyResult(
            strategy=strategy,
            losses=losses,
            seconds=seconds,
            stores_encoder=run.strategy.stores_encoder,
        )

    def _outputs(self, run: Any) -> list[dict[str, Any]]:
        from .inference import compute_outputs

        records = run.task.parse_inputs(self.predict_inputs)
        features = run.task.encode(
            records, run.tokenizer, max_length=run.training.max_length, with_labels=False
        )
        outputs, _ = compute_outputs(run.model, run.task, run.tokenizer, features, batch_size=8)
        return outputs

    def run(self, strategies: Iterable[str] | None = None) -> ContractReport:
        """Every check, with every registered strategy (or those given)."""
        plugin = self.check_registered()
        records, features = self.check_encode()
        self.check_bad_input()
        report = ContractReport(
            task=self.name, plugin=plugin, num_records=len(records), num_features=len(features)
        )
        for strategy in strategies if strategies is not None else self.strategies():
            report.strategies[strategy] = self.check_strategy(strategy)
        return report

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp, self._workdir = None, None


def check_task(
    task_cls_or_name: str | type[Task],
    records: Any,
    *,
    predict_inputs: Sequence[Any],
    model_path: str | os.PathLike | None = None,
    strategies: Iterable[str] | None = None,
    options: Mapping[str, Any] | None = None,
    strategy_options: Mapping[str, Mapping[str, Any]] | None = None,
    training: Mapping[str, Any] | None = None,
) -> ContractReport:
    """Check that a task keeps the plugin contract; raise :class:`ContractError` if not.

    The task must be registered under a unique name, encode *records* into features that
    carry ``example_index``, train a few epochs with every registered strategy (or
    *strategies*) on a tiny model with a finite, falling loss, give one prediction per
    input of *predict_inputs*, load back from a saved bundle to identical predictions, and
    raise :class:`~tunekit.errors.DataError` for empty data. See :class:`TaskChecker` for
    *options*, *strategy_options* and *training*.

    Example::

        from tunekit.testing import check_task

        def test_contract():
            report = check_task(
                "classify",
                [{"text": "a good film", "label": "pos"}, {"text": "a bad film", "label": "neg"}] * 8,
                predict_inputs=["a good film", "a bad film"],
            )
            assert set(report.strategies) >= {"full", "lora"}
    """
    checker = TaskChecker(
        task_cls_or_name,
        records,
        predict_inputs=predict_inputs,
        model_path=model_path,
        options=options,
        strategy_options=strategy_options,
        training=training,
    )
    try:
        return checker.run(strategies)
    finally:
        checker.close()


class TaskContract:
    """pytest-ready contract: subclass it in a ``Test*`` class and set the attributes.

    Each check is its own test, and training is one test per registered strategy
    (``test_trains_and_round_trips[lora]``...). Attributes: ``task`` (name or class),
    ``records``, ``predict_inputs`` and, optionally, ``options``, ``strategies`` (``None``:
    every registered one), ``strategy_options``, ``training``, ``model_path``.

    Example::

        from tunekit.testing import TaskContract

        class TestClassifyContract(TaskContract):
            task = "classify"
            records = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}] * 8
            predict_inputs = ["good", "bad"]
    """

    task: ClassVar[str | type] = ""
    records: ClassVar[Any] = ()
    predict_inputs: ClassVar[Sequence[Any]] = ()
    options: ClassVar[Mapping[str, Any] | None] = None
    strategies: ClassVar[Sequence[str] | None] = None
    strategy_options: ClassVar[Mapping[str, Mapping[str, Any]] | None] = None
    training: ClassVar[Mapping[str, Any] | None] = None
    model_path: ClassVar[str | None] = None

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "contract_strategy" in metafunc.fixturenames:
            names = (
                list(self.strategies) if self.strategies is not None else registered_strategies()
            )
            metafunc.parametrize("contract_strategy", names)

    @classmethod
    def _checker(cls, tmp_path_factory: Any) -> TaskChecker:
        key = "_tunekit_checker"
        checker = cls.__dict__.get(key)
        if checker is None:
            checker = TaskChecker(
                cls.task,
                cls.records,
                predict_inputs=cls.predict_inputs,
                model_path=cls.model_path,
                options=cls.options,
                strategy_options=cls.strategy_options,
                training=cls.training,
                workdir=tmp_path_factory.mktemp("contract"),
            )
            setattr(cls, key, checker)
        return checker

    def test_registered_under_unique_name(self, tmp_path_factory: Any) -> None:
        self._checker(tmp_path_factory).check_registered()

    def test_encodes_records(self, tmp_path_factory: Any) -> None:
        self._checker(tmp_path_factory).check_encode()

    def test_empty_data_is_a_data_error(self, tmp_path_factory: Any) -> None:
        self._checker(tmp_path_factory).check_bad_input()

    def test_trains_and_round_trips(self, tmp_path_factory: Any, contract_strategy: str) -> None:
        self._checker(tmp_path_factory).check_strategy(contract_strategy)
