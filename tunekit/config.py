"""Training options and the routing of ``finetune(**options)`` to task, strategy and trainer."""

from __future__ import annotations

import functools
import numbers
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .errors import ConfigError, close_matches_hint

if typing.TYPE_CHECKING:
    from .strategy import Strategy
    from .task import Task


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number_or_fail(attribute: attrs.Attribute, value: Any, rule: str) -> None:
    if not _is_number(value):
        raise ConfigError(
            f"option {attribute.name}={value!r} must be a number {rule}, not "
            f"{type(value).__name__}{_unquote_hint(attribute.name, value)}"
        )


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: the option is ``None`` or a number > 0 (a string or bool is refused
    naming the option).

    Example::

        @attrs.frozen(kw_only=True)
        class MyConfig:
            k: int = attrs.field(default=2, validator=positive)
    """
    if value is None:
        return
    _number_or_fail(attribute, value, "> 0")
    if not value > 0:
        raise ConfigError(f"option {attribute.name}={value!r} must be > 0")


def non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: the option is ``None`` or a number >= 0.

    Example::

        stride: int = attrs.field(default=32, validator=non_negative)
    """
    if value is None:
        return
    _number_or_fail(attribute, value, ">= 0")
    if value < 0:
        raise ConfigError(f"option {attribute.name}={value!r} must be >= 0")


def fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: the option is a number in ``[0, 1)``.

    Example::

        eval_split: float = attrs.field(default=0.1, validator=fraction)
    """
    _number_or_fail(attribute, value, "in [0, 1)")
    if not 0 <= value < 1:
        raise ConfigError(f"option {attribute.name}={value!r} must be in [0, 1)")


def one_of(*choices: str):
    """attrs validator factory: the option is one of *choices* (a typo gets close matches).

    Example::

        pooling: str = attrs.field(default="mean", validator=one_of("mean", "cls", "max"))
    """

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise ConfigError(
                f"option {attribute.name}={value!r} is not one of {', '.join(map(repr, choices))}"
                f"{close_matches_hint(str(value), choices)}"
            )

    return check


#: the largest seed NumPy's generator takes (``set_seed`` seeds it too)
MAX_SEED = 2**32 - 1


def seed_value(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: a random seed, an int in ``[0, 2**32 - 1]`` (what torch, NumPy and
    ``random`` all accept).

    Example::

        eval_seed: int = attrs.field(default=1234, validator=seed_value)
    """
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ConfigError(
            f"option {attribute.name}={value!r} must be a whole number (int) from 0 to {MAX_SEED}, "
            f"not {type(value).__name__}{_unquote_hint(attribute.name, value)}"
        )
    if not 0 <= int(value) <= MAX_SEED:
        raise ConfigError(
            f"option {attribute.name}={value!r} is out of range: a seed is from 0 to {MAX_SEED}; "
            f"pass e.g. {attribute.name}=42"
        )


# the names plugins imported before the validators were public
_positive = positive
_non_negative = non_negative
_fraction = fraction
_one_of = one_of


def _resume_needs_output_dir(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    # without output_dir, checkpoints would be looked for in the working directory, where
    # another run may have left its own
    if value and not instance.output_dir:
        raise ConfigError(
            "option resume=True needs output_dir: the directory of the run to continue "
            "(its checkpoints are in output_dir/checkpoints); pass output_dir=... "
            "(CLI --output-dir) or drop resume"
        )


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
    seed: int = attrs.field(default=42, validator=seed_value)
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
    #: keep ``output_dir/checkpoints`` after the final bundle is saved (by default they are
    #: deleted then: they only serve resuming an unfinished run)
    keep_checkpoints_after_training: bool = False
    resume: bool = attrs.field(default=False, validator=_resume_needs_output_dir)
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
    """Instantiate an attrs config, checking each option's type against the field's
    annotation first (:func:`check_option_types`), and turning any other type/validation
    error into a :class:`ConfigError`."""
    check_option_types(config_cls, options, owner=owner)
    try:
        return config_cls(**options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad option for {owner}: {exc}") from exc


def check_option_types(config_cls: type, options: Mapping[str, Any], *, owner: str) -> None:
    """Refuse, naming the option, a value whose type does not fit the annotation of its
    field in the attrs class *config_cls* (training, task and strategy configs alike):
    ``epochs="2"``, ``epochs=1.5``, ``hidden="abc"``, ``dropout="high"``... A field with a
    converter is checked on the converted value, and a converter that fails names the
    option too. Unknown names are left to the caller; annotations that cannot be resolved
    are not checked.

    Example::

        check_option_types(TrainingConfig, {"epochs": "2"}, owner="training")
        # ConfigError: option epochs='2' (training) must be a whole number (int), not str; ...
    """
    if not attrs.has(config_cls):
        return
    hints = _type_hints(config_cls)
    fields = attrs.fields_dict(config_cls)
    for name, value in options.items():
        field = fields.get(name)
        expected = hints.get(name)
        if field is None or expected is None:
            continue
        what = describe_type(expected)
        example = _example(field, expected)
        converter = field.converter
        if converter is not None and not isinstance(converter, attrs.Converter):
            if isinstance(value, str) and _wants_sequence_of_non_strings(expected):
                raise ConfigError(
                    f"option {name}={value!r} ({owner}) must be {what}, not a string; "
                    f"pass a list, e.g. {name}={example}"
                )
            try:
                value = converter(value)
            except ConfigError:
                raise
            except Exception as exc:
                raise ConfigError(
                    f"option {name}={value!r} ({owner}) must be {what} ({type(exc).__name__}: "
                    f"{exc}); e.g. {name}={example}"
                ) from None
        if not fits_type(value, expected):
            raise ConfigError(
                f"option {name}={value!r} ({owner}) must be {what}, not {type(value).__name__}"
                f"{_unquote_hint(name, value) or f'; e.g. {name}={example}'}"
            )


@functools.cache
def _type_hints(config_cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_cls)
    except Exception:  # an annotation naming something not importable: skip the checks
        return {}


def _union_args(expected: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(expected)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(expected)
    return None


def fits_type(value: Any, expected: Any) -> bool:
    """Whether *value* fits the type annotation *expected* (``int``, ``float | None``,
    ``tuple[int, ...]``, ``Literal[...]``, ``Mapping[str, float]``...). ``bool`` is not
    an int here, an int is a float, and a list fits a tuple annotation (JSON has no
    tuples).

    Example::

        fits_type(3, int), fits_type("3", int), fits_type([256, 128], tuple[int, ...])
        # (True, False, True)
    """
    if expected is Any or expected is object:
        return True
    union = _union_args(expected)
    if union is not None:
        return any(fits_type(value, arg) for arg in union)
    if expected is type(None) or expected is None:
        return value is None
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin is Literal:
        return value in args
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if expected is float:
        return _is_number(value)
    if expected is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(fits_type(v, args[0]) for v in value)
        if origin is list:
            return all(fits_type(v, args[0]) for v in value)
        return len(value) == len(args) and all(fits_type(v, a) for v, a in zip(value, args))
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            return False
        return len(args) != 2 or all(fits_type(v, args[1]) for v in value.values())
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True  # a typing construct not checked here


_TYPE_NAMES = {
    bool: "True or False",
    int: "a whole number (int)",
    float: "a number",
    str: "a string",
    type(None): "None",
}


def describe_type(expected: Any) -> str:
    """Words for a type annotation, for error messages: ``int | None`` → ``"a whole
    number (int) or None"``.

    Example::

        describe_type(tuple[int, ...])  # 'a list of whole numbers (int)'
    """
    union = _union_args(expected)
    if union is not None:
        return " or ".join(describe_type(arg) for arg in union)
    if expected in _TYPE_NAMES:
        return _TYPE_NAMES[expected]
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (tuple, list):
        if len(args) == 2 and args[1] is Ellipsis or (origin is list and args):
            inner = describe_type(args[0])
            plural = {
                "a whole number (int)": "whole numbers (int)",
                "a number": "numbers",
                "a string": "strings",
            }.get(inner, inner)
            return f"a list of {plural}"
        if args:
            return f"a list of {len(args)}: " + ", ".join(describe_type(a) for a in args)
        return "a list"
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return "a mapping" + (f" of {describe_type(args[1])} values" if len(args) == 2 else "")
    return getattr(expected, "__name__", str(expected))


def _wants_sequence_of_non_strings(expected: Any) -> bool:
    # "512" for hidden: tuple[int, ...] would convert to (5, 1, 2): refuse a string there
    union = _union_args(expected)
    options = union if union is not None else (expected,)
    if any(arg is str for arg in options):
        return False
    for arg in options:
        if typing.get_origin(arg) in (tuple, list):
            inner = typing.get_args(arg)
            if inner and inner[0] is not str:
                return True
    return False


def _example(field: attrs.Attribute, expected: Any) -> str:
    """The field's default when it is a telling example, else a sample of the type."""
    default = field.default
    # attrs' stubs declare ``attrs.Factory`` as an overloaded function; at runtime it is the class
    not_factory = not isinstance(default, attrs.Factory)  # type: ignore[arg-type]
    if default not in (None, attrs.NOTHING, (), "") and not_factory:
        return repr(list(default) if isinstance(default, tuple) else default)
    union = _union_args(expected)
    if union is not None:
        expected = next((a for a in union if a is not type(None)), expected)
    samples = {int: "8", float: "0.5", str: "'name'", bool: "True"}
    if expected in samples:
        return samples[expected]
    args = typing.get_args(expected)
    if typing.get_origin(expected) in (tuple, list) and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"[{samples.get(args[0], '...')}]"
        return "[" + ", ".join(samples.get(a, "...") for a in args) + "]"
    return "..."


def _unquote_hint(name: str, value: Any) -> str:
    """'; write epochs=2 (a number, without quotes)' when a string holds a number."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return ""
        shown = int(number) if number.is_integer() and "." not in value else number
        return f"; write {name}={shown!r} (a number, without quotes)"
    if isinstance(value, float) and value.is_integer():
        return f"; write {name}={int(value)}"
    return ""


def split_options(
    options: Mapping[str, Any], *, task_cls: type[Task], strategy_cls: type[Strategy]
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
