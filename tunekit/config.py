"""Training options and the routing of ``finetune(**options)`` to task, strategy and trainer."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .errors import ConfigError, close_matches_hint


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"option {attribute.name}={value!r} must be > 0")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value < 0:
        raise ConfigError(f"option {attribute.name}={value!r} must be >= 0")


def _fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0 <= value < 1:
        raise ConfigError(f"option {attribute.name}={value!r} must be in [0, 1)")


def _one_of(*choices: str):
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise ConfigError(
                f"option {attribute.name}={value!r} is not one of {', '.join(map(repr, choices))}"
                f"{close_matches_hint(str(value), choices)}"
            )

    return check


#: public names of the option validators (``tunekit.plugin`` re-exports them for plugin
#: authors' ``Config`` classes)
positive = _positive
non_negative = _non_negative
fraction = _fraction
one_of = _one_of


def _compile_value(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, (bool, str)) or value == "":
        raise ConfigError(
            f"option {attribute.name}={value!r} must be True, False or a torch.compile backend "
            f"name such as 'inductor'"
        )


def _optional_path(value: Any) -> str | None:
    return None if value is None else os.fspath(value)


#: experiment trackers ``report_to=`` accepts (accelerate's tracker names)
TRACKERS = (
    "tensorboard",
    "mlflow",
    "wandb",
    "comet_ml",
    "aim",
    "clearml",
    "dvclive",
    "swanlab",
    "trackio",
)


def _trackers(value: Any) -> tuple[str, ...]:
    """``None`` / ``"none"`` → ``()``; ``"tensorboard"`` or ``"tensorboard,mlflow"`` or a list → a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    names = tuple(str(v).lower() for v in value)
    return () if names == ("none",) else names


def _known_trackers(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    for name in value:
        if name not in TRACKERS:
            raise ConfigError(
                f"option report_to={name!r} is not a tracker{close_matches_hint(name, TRACKERS) or '.'} "
                f"Use one or more of {', '.join(TRACKERS)}, or None."
            )


def _verbosity(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    from .log import level_of

    if value is not None:
        level_of(value)


@attrs.frozen(kw_only=True)
class TrainingConfig:
    """Options of the trainer; each is a keyword argument of ``finetune()`` and a CLI flag.

    Example::

        TrainingConfig(epochs=3, batch_size=32, learning_rate=5e-5, precision="bf16")
    """

    epochs: int = attrs.field(default=3, validator=_positive)
    batch_size: int = attrs.field(default=16, validator=_positive)
    eval_batch_size: int | None = attrs.field(default=None, validator=_positive)
    learning_rate: float = attrs.field(default=5e-5, validator=_positive)
    max_length: int = attrs.field(default=128, validator=_positive)
    warmup_ratio: float = attrs.field(default=0.1, validator=_fraction)
    weight_decay: float = attrs.field(default=0.01, validator=_non_negative)
    scheduler: str = attrs.field(
        default="linear", validator=_one_of("linear", "cosine", "constant")
    )
    gradient_accumulation_steps: int = attrs.field(default=1, validator=_positive)
    max_grad_norm: float | None = attrs.field(default=1.0, validator=_positive)
    eval_steps: int | None = attrs.field(default=None, validator=_positive)
    eval_split: float = attrs.field(default=0.1, validator=_fraction)
    early_stopping_patience: int | None = attrs.field(default=None, validator=_positive)
    metric_for_best: str | None = None
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16", "fp16"] = attrs.field(
        default="auto", validator=_one_of("auto", "fp32", "bf16", "fp16")
    )
    compile: bool | str = attrs.field(default=False, validator=_compile_value)
    num_threads: int | None = attrs.field(default=None, validator=_positive)
    logging_steps: int = attrs.field(default=50, validator=_positive)
    gradient_checkpointing: bool = False
    group_by_length: bool = True
    output_dir: str | None = attrs.field(default=None, converter=_optional_path)
    checkpoint_steps: int | None = attrs.field(default=None, validator=_positive)
    keep_checkpoints: int = attrs.field(default=2, validator=_positive)
    resume: bool = False
    progress: bool | None = None
    on_nan: str = attrs.field(default="raise", validator=_one_of("raise", "skip"))
    report_to: tuple[str, ...] = attrs.field(
        default=(), converter=_trackers, validator=_known_trackers
    )
    logging_dir: str | None = attrs.field(default=None, converter=_optional_path)
    run_name: str | None = None
    verbose: bool | str | None = attrs.field(default=None, validator=_verbosity)


TRAINING_OPTIONS = tuple(f.name for f in attrs.fields(TrainingConfig))


def option_names(config_cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in attrs.fields(config_cls)) if attrs.has(config_cls) else ()


def build_config(config_cls: type, options: Mapping[str, Any], *, owner: str) -> Any:
    """Instantiate an attrs config, turning type/validation errors into :class:`ConfigError`."""
    try:
        return config_cls(**options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad option for {owner}: {exc}") from exc


def split_options(
    options: Mapping[str, Any], *, task_cls: type, strategy_cls: type
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Route keyword options to (training, task, strategy); an unknown name is an error
    with close matches, never silently ignored."""
    task_names = option_names(task_cls.Config)
    strategy_names = option_names(strategy_cls.Config)
    training: dict[str, Any] = {}
    task: dict[str, Any] = {}
    strategy: dict[str, Any] = {}
    for key, value in options.items():
        matched = False
        if key in TRAINING_OPTIONS:
            training[key], matched = value, True
        if key in task_names:
            task[key], matched = value, True
        if key in strategy_names:
            strategy[key], matched = value, True
        if not matched:
            known = (*TRAINING_OPTIONS, *task_names, *strategy_names)
            raise ConfigError(
                f"unknown option {key!r} for task {task_cls.name!r} with strategy {strategy_cls.name!r}"
                f"{close_matches_hint(key, known) or '.'} Options: training: {', '.join(TRAINING_OPTIONS)}; "
                f"task {task_cls.name!r}: {', '.join(task_names) or '(none)'}; "
                f"strategy {strategy_cls.name!r}: {', '.join(strategy_names) or '(none)'}."
            )
    return training, task, strategy


def config_to_dict(config: Any) -> dict[str, Any]:
    return attrs.asdict(config, recurse=True) if attrs.has(type(config)) else {}
