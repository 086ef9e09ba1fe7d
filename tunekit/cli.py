"""The ``tunekit`` command line (argparse).

Commands::

    tunekit finetune --task classify --data reviews.csv --output out/sentiment [--epochs 3 ...]
    tunekit predict out/sentiment "some text" [--input file]
    tunekit evaluate out/sentiment --data test.csv
    tunekit export out/sentiment out/sentiment-hf [--format hf]
    tunekit tasks | strategies | models | plugins
    tunekit doctor

Every training option of ``finetune()`` is a flag of the same name (``--batch-size 32``),
and so is every option of the chosen task and strategy (``--text-column review``,
``--r 8``); a misspelled flag is an error with close matches. A ``TunekitError`` prints
one line and exits with status 1 (the traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .__about__ import __version__
from .errors import ConfigError, TunekitError

EXIT_ERROR = 1


def _value(text: str) -> Any:
    """Parse a flag value: JSON (numbers, lists, true/false, null) or a plain string."""
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_extra_options(extra: list[str]) -> dict[str, Any]:
    """``["--batch-size", "32", "--no-progress", "--hidden", "[256]"]`` → options dict."""
    options: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"unexpected argument {token!r}; options are given as --name value")
        name = token[2:]
        if "=" in name:
            name, raw = name.split("=", 1)
            options[name.replace("-", "_")] = _value(raw)
            i += 1
            continue
        if name.startswith("no-") and (i + 1 == len(extra) or extra[i + 1].startswith("--")):
            options[name[3:].replace("-", "_")] = False
            i += 1
            continue
        if i + 1 == len(extra) or extra[i + 1].startswith("--"):
            options[name.replace("-", "_")] = True
            i += 1
            continue
        options[name.replace("-", "_")] = _value(extra[i + 1])
        i += 2
    return options


def load_config_file(path: str) -> dict[str, Any]:
    """Options from a JSON or YAML file mirroring ``finetune()``'s keyword arguments."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path} not found")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                f"config file {path} is YAML but PyYAML is not installed; pip install pyyaml or use JSON"
            ) from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option names to values")
    return data


def _default(field: Any) -> str:
    default = field.default
    if default is None or type(default).__name__ == "Factory":
        return ""
    if isinstance(default, bool):
        return f" (default: {'true' if default else 'false'})"
    if isinstance(default, tuple):
        default = list(default)
    return f" (default: {default if isinstance(default, str) else json.dumps(default)})"


def _flags(config_cls: type) -> list[str]:
    import attrs

    if not attrs.has(config_cls):
        return []
    return [f"--{f.name.replace('_', '-')}{_default(f)}" for f in attrs.fields(config_cls)]


def options_listing() -> str:
    """Every option ``tunekit finetune`` takes, generated from the attrs configs: the
    training options, then each registered task's and strategy's own.

    Example::

        print(options_listing())   # the end of `tunekit finetune --help`
    """
    import textwrap

    from .config import TrainingConfig
    from .plugins import get_state

    lines = ["training options (every task and strategy; see docs/configuration.md):"]
    lines += [f"  {flag}" for flag in _flags(TrainingConfig)]
    state = get_state()
    for kind, registry in (("task", state.tasks), ("strategy", state.strategies)):
        for name in registry.names():
            flags = ", ".join(_flags(registry.get(name).Config)) or "(none)"
            lines.append(f"{kind} {name!r} options:")
            lines += textwrap.wrap(
                flags, 96, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False
            )
    lines.append(
        "Values are JSON where they parse (--hidden [256,128], --eval-split 0), else strings; "
        "a bare flag is true, --no-FLAG false."
    )
    return "\n".join(lines)


def _with_options_listing(help_text: str) -> str:
    try:
        return f"{help_text}\n{options_listing()}\n"
    except TunekitError as exc:  # a plugin clash: still show the rest of the help
        return f"{help_text}\n(options of tasks and strategies unavailable: {exc})\n"


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help can end with the options of every task and strategy
    (``list_options=True``: ``tunekit finetune --help``)."""

    def __init__(self, *args: Any, list_options: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.list_options = list_options

    def format_help(self) -> str:
        text = super().format_help()
        return _with_options_listing(text) if self.list_options else text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunekit", description="Fine-tune transformer encoders for NLP tasks."
    )
    parser.add_argument("--version", action="version", version=f"tunekit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ft = sub.add_parser(
        "finetune",
        help="fine-tune a model and save a bundle",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        list_options=True,
        description="Fine-tune a model. Any finetune() option is a flag: --epochs 3 --batch-size 32 "
        "--learning-rate 5e-5 --max-length 128 --precision bf16 --text-column review --r 8 ...",
    )
    ft.add_argument("--task", help="task name or alias (see `tunekit tasks`)")
    ft.add_argument("--data", help="training data file")
    ft.add_argument(
        "--model",
        default=None,
        help="model alias, hub id or local directory (default: embedded MiniLM)",
    )
    ft.add_argument(
        "--eval-data", default=None, help="evaluation data file (default: an eval_split of --data)"
    )
    ft.add_argument("--strategy", default=None, help="fine-tuning strategy (default: full)")
    ft.add_argument(
        "--output",
        "--output-dir",
        dest="output",
        default=None,
        help="run directory: checkpoints go to OUTPUT/checkpoints while training (deleted once the "
        "bundle is saved, unless --keep-checkpoints-after-training), the bundle to OUTPUT/bundle; "
        "`tunekit predict OUTPUT` loads it. Without it the model is not saved",
    )
    ft.add_argument(
        "--export",
        default=None,
        help="also export the trained model to this directory as a transformers model; checked "
        "before training (an unexportable head fails at once, naming the options that export)",
    )
    ft.add_argument(
        "--sign-key-file",
        default=None,
        help="sign the --output bundle with the key in this file (HMAC-SHA256); load it with "
        "--verify-key-file",
    )
    ft.add_argument(
        "--config", default=None, help="JSON/YAML file of finetune() options (flags override it)"
    )
    ft.add_argument(
        "--plots",
        default=None,
        help="directory to write the learning curve (and, for classification, the confusion matrix "
        "on the evaluation data) to",
    )

    columns_help = (
        "Column options of the task name the data's columns as in finetune (--text-column review "
        "--label-column sentiment; see `tunekit finetune --help`); by default the columns the model "
        "was trained on, else the usual names."
    )
    pr = sub.add_parser("predict", help="predict with a saved bundle", epilog=columns_help)
    pr.add_argument("bundle", help="bundle directory, or a finetune --output directory")
    pr.add_argument(
        "--verify-key-file",
        default=None,
        help="refuse the bundle unless it was signed (--sign-key-file) with the key in this file",
    )
    pr.add_argument("inputs", nargs="*", help="inputs (texts; JSON for structured inputs)")
    pr.add_argument(
        "--input",
        dest="input_file",
        default=None,
        help="file with one input per line (text or JSON), or a table (.csv, .tsv, .jsonl, "
        ".parquet) whose text column(s) are read",
    )
    pr.add_argument("--batch-size", type=int, default=None)
    pr.add_argument(
        "-o",
        "--option",
        dest="options",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a predict() option of the task, e.g. --option top_k=5 (repeatable; values parsed "
        "like finetune flags)",
    )
    _serving_arguments(pr)

    ev = sub.add_parser(
        "evaluate", help="evaluate a saved bundle on labelled data", epilog=columns_help
    )
    ev.add_argument("bundle", help="bundle directory, or a finetune --output directory")
    ev.add_argument(
        "--verify-key-file",
        default=None,
        help="refuse the bundle unless it was signed (--sign-key-file) with the key in this file",
    )
    ev.add_argument("--data", required=True, help="labelled data file")
    _serving_arguments(ev)

    ex = sub.add_parser(
        "export",
        help="export a saved bundle as a transformers model (save_pretrained layout)",
        description="Write BUNDLE as a 🤗 transformers model directory that transformers.pipeline() loads "
        "with the same predictions (adapters merged, head mapped onto the AutoModelFor... class).",
    )
    ex.add_argument("bundle")
    ex.add_argument(
        "--verify-key-file",
        default=None,
        help="refuse the bundle unless it was signed (--sign-key-file) with the key in this file",
    )
    ex.add_argument("output", help="directory to write the exported model to")
    ex.add_argument(
        "--format",
        default="hf",
        help="hf (transformers, default) or onnx (a verified ONNX graph that `tunekit predict` "
        "and tunekit.load() serve through onnxruntime; any task, head and strategy)",
    )
    ex.add_argument(
        "--data",
        default=None,
        help="onnx: held-out labelled data for the parity gate (and the int8 metric gate)",
    )
    ex.add_argument("--atol", type=float, default=None, help="onnx: largest |Δ output| allowed")
    ex.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        help="onnx: smallest share of equal predictions on --data (0-1)",
    )
    ex.add_argument(
        "--quantize",
        choices=["int8", "int8-per-tensor"],
        default=None,
        help="onnx: int8 weights and activations (int8: one activation scale per token; "
        "int8-per-tensor: onnxruntime's quantize_dynamic, one per tensor)",
    )
    ex.add_argument(
        "--max-drop",
        type=float,
        default=None,
        help="onnx --quantize int8: largest metric drop in points allowed (default 1.0)",
    )

    sub.add_parser("tasks", help="list registered tasks")
    sub.add_parser("strategies", help="list registered strategies")
    sub.add_parser("models", help="list model aliases")
    sub.add_parser("plugins", help="list plugins, what they registered, and failures")
    sub.add_parser(
        "doctor",
        help="versions, device, plugins and what they registered; exit 1 if a plugin failed",
    )
    return parser


def _read_key_file(path: str | None, flag: str) -> bytes | None:
    """The key in *path* (surrounding whitespace dropped), or ``None`` without the flag."""
    if path is None:
        return None
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"{flag} {path} cannot be read ({exc.strerror or exc})") from None
    if not key:
        raise ConfigError(f"{flag} {path} is empty; put a secret key (e.g. 32 random bytes) in it")
    return key


def _cmd_finetune(args: argparse.Namespace, extra: list[str]) -> int:
    from .api import finetune

    options = load_config_file(args.config) if args.config else {}
    options.update(parse_extra_options(extra))
    for name in ("task", "data", "model", "eval_data", "strategy"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    options.setdefault("strategy", "full")
    task = options.pop("task", None)
    if not task:
        raise ConfigError("--task is required (see `tunekit tasks`)")
    if options.get("data") is None:
        raise ConfigError("--data is required: a CSV/TSV/JSON Lines/JSON/Parquet file")
    sign_key = _read_key_file(args.sign_key_file, "--sign-key-file")
    if sign_key is not None and not args.output:
        raise ConfigError("--sign-key-file signs the bundle --output writes; pass --output DIR too")
    if args.output:
        from .atomic import check_save_target, check_writable_directory

        check_writable_directory(args.output, option="--output")
        # before training, not after
        check_save_target(Path(args.output) / "bundle", option="--output")
        options["output_dir"] = args.output
    if args.export:
        options["export"] = args.export
    from .bundle import _is_main_process

    main = _is_main_process()  # under torchrun / accelerate launch only rank 0 reports
    if not options.get("output_dir") and main:
        # on stdout, so that an error stays the one line on stderr
        print("note: no --output DIR: the trained model will not be saved", flush=True)
    run = finetune(task, **options)
    if not main:
        return 0
    print(run.history)
    if run.metrics:
        print(
            "metrics: "
            + ", ".join(
                f"{k}={v:.4f}" for k, v in run.metrics.items() if isinstance(v, (int, float))
            )
        )
    if run.bundle_path:
        if sign_key:
            run.save(run.bundle_path, sign_key=sign_key)
        output = options["output_dir"]
        print(f"saved bundle: {run.bundle_path} (use it with: tunekit predict {output} TEXT)")
    else:
        print("model not saved (pass --output DIR to keep it)")
    if args.export:
        print(f"exported: {args.export}")
    if args.plots:
        plots = Path(args.plots)
        if any(row.get("train_loss") is not None for row in run.history):
            print(f"learning curve: {run.plot(plots / 'learning_curve.png')}")
        plot_topics = getattr(run, "plot_topics", None)
        if callable(plot_topics):  # a topic model: its 2D map
            print(f"topic map: {plot_topics(plots / 'topic_map.png')}")
        schema = run.task.schema
        if schema is not None and schema.kind == "single_label" and run.task.supervised:
            held_out = _evaluation_records(run, options)
            if held_out:
                path = run.plot_confusion(plots / "confusion_matrix.png", held_out)
                print(f"confusion matrix: {path}")
    return 0


def _evaluation_records(run: Any, options: dict[str, Any]) -> Any:
    """What the run was evaluated on: ``--eval-data``, else the same seeded ``eval_split``
    of ``--data`` that ``finetune()`` held out (``None`` without evaluation)."""
    if options.get("eval_data") is not None:
        return options["eval_data"]
    if run.training.eval_split <= 0:
        return None
    from .data import split_records

    records = run.task.read(options["data"], name="data")
    return split_records(
        records,
        fraction=run.training.eval_split,
        seed=run.training.seed,
        key=run.task.stratify_key,
    )[1]


def _read_inputs(args: argparse.Namespace) -> list[Any]:
    items: list[str] = list(args.inputs)
    if args.input_file:
        path = Path(args.input_file)
        if not path.is_file():
            raise ConfigError(f"--input file {path} not found")
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            from .errors import DataError

            line = raw[: exc.start].count(b"\n") + 1
            raise DataError(
                f"--input file {path} is not UTF-8 (line {line}, byte {exc.start}); re-save it "
                f"as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
            ) from None
        items += [line for line in text.splitlines() if line.strip()]
    if not items:
        raise ConfigError("nothing to predict: give inputs as arguments or --input FILE")
    parsed = []
    for item in items:
        stripped = item.strip()
        if stripped.startswith(("{", "[")):
            try:
                value = json.loads(stripped)
                parsed.append(tuple(value) if isinstance(value, list) else value)
                continue
            except json.JSONDecodeError:
                pass
        parsed.append(item)
    return parsed


def _serving_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers`` / ``--threads`` / ``--spin``: how an ONNX export serves (``tunekit.load``)."""
    group = parser.add_argument_group("serving an ONNX export")
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        help="batches run side by side (default: one per CPU; 1: every thread on one batch)",
    )
    group.add_argument(
        "--threads",
        type=int,
        default=None,
        help="onnxruntime threads per batch (default: the CPUs divided among the workers)",
    )
    group.add_argument(
        "--spin", action="store_true", help="let idle onnxruntime threads busy-wait for work"
    )


def _serving(args: argparse.Namespace) -> dict[str, Any]:
    return {"workers": args.workers, "threads": args.threads, "spin": args.spin}


def _cmd_predict(args: argparse.Namespace, extra: list[str]) -> int:
    from .api import load

    options = {}
    for item in args.options:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--option {item!r}: write NAME=VALUE, e.g. --option top_k=5")
        options[name.strip().replace("-", "_")] = _value(value)
    from .run import check_batch_size

    check_batch_size(args.batch_size, option="--batch-size")  # before loading the bundle
    table = args.input_file and Path(args.input_file).suffix.lower() in TABLE_SUFFIXES
    if table and not Path(args.input_file).is_file():
        raise ConfigError(f"--input file {args.input_file} not found")
    inputs = Path(args.input_file) if table and not args.inputs else _read_inputs(args)
    key = _read_key_file(args.verify_key_file, "--verify-key-file")
    run = load(args.bundle, verify_key=key, **_serving(args))
    columns = _column_options(run, extra)
    for pred in run.predict(inputs, batch_size=args.batch_size, **columns, **options):
        print(json.dumps(pred, ensure_ascii=False, default=str))
    return 0


#: ``--input`` files read as tables (their text column) rather than one input per line
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".parquet", ".pq")


def _column_options(run: Any, extra: list[str]) -> dict[str, Any]:
    """``--text-column review ...`` → the task's column options; anything else is refused."""
    options = parse_extra_options(extra)
    known = run.column_options()
    unknown = [k for k in options if k not in known]
    if unknown:
        from .errors import close_matches_hint

        flags = [k.replace("_", "-") for k in known]
        raise ConfigError(
            f"unknown option --{unknown[0].replace('_', '-')}"
            f"{close_matches_hint(unknown[0].replace('_', '-'), flags) or '.'} Column options of "
            f"task {run.task.name!r}: {', '.join('--' + f for f in flags) or '(none)'}"
        )
    return options


def _cmd_evaluate(args: argparse.Namespace, extra: list[str]) -> int:
    from .api import load

    key = _read_key_file(args.verify_key_file, "--verify-key-file")
    run = load(args.bundle, verify_key=key, **_serving(args))
    metrics = run.evaluate(args.data, **_column_options(run, extra))
    for name, value in metrics.items():
        print(f"{name}\t{value:.6f}" if isinstance(value, float) else f"{name}\t{value}")
    return 0


def _onnx_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``export`` flags that apply to ``--format onnx`` (an error with another format)."""
    options = {
        "records": args.data,
        "atol": args.atol,
        "min_agreement": args.min_agreement,
        "quantize": args.quantize,
        "max_drop": args.max_drop,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if options and args.format != "onnx":
        from .errors import ConfigError

        flags = ", ".join(
            "--" + ("data" if k == "records" else k.replace("_", "-")) for k in options
        )
        raise ConfigError(f"{flags} apply to --format onnx only")
    return options


def _cmd_export(args: argparse.Namespace) -> int:
    from .api import load
    from .export import EXPORT_FILE, loading_code

    key = _read_key_file(args.verify_key_file, "--verify-key-file")
    run = load(args.bundle, verify_key=key)
    # an hf refusal (mean pooling, a CRF...) names --format onnx, which exports any head
    path = run.export(args.output, format=args.format, **_onnx_options(args))
    print(f"exported: {path}")
    info_file = Path(path) / EXPORT_FILE
    if info_file.is_file():
        info = json.loads(info_file.read_text(encoding="utf-8"))
        print("load it with:")
        print(loading_code(info, path, max_length=run.training.max_length))
    return 0


def _cmd_list(command: str) -> int:
    from .plugins import get_state

    state = get_state()
    if command in ("tasks", "strategies"):
        registry = state.tasks if command == "tasks" else state.strategies
        for name in registry.names():
            cls = registry.get(name)
            aliases = registry.aliases_of(name)
            extra = f" (aliases: {', '.join(aliases)})" if aliases else ""
            print(f"{name:<16}{getattr(cls, 'description', '')}{extra}  [{registry.owner(name)}]")
    elif command == "models":
        for name in state.models.names():
            alias = state.models.get(name)
            info = ", ".join(f"{k}={v}" for k, v in alias.info.items())
            print(f"{name:<18}{alias.target}  {info}")
    else:
        for rec in state.records:
            status = f"FAILED: {rec.error}" if rec.error else ", ".join(rec.registered) or "-"
            version = f" {rec.version}" if rec.version else ""
            print(f"{rec.name:<24}{rec.source}{version}  {status}")
    return 0


def _cmd_doctor() -> int:
    from .doctor import diagnose, format_diagnosis

    diagnosis = diagnose()
    print(format_diagnosis(diagnosis))
    return 0 if diagnosis.ok else EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command not in ("finetune", "predict", "evaluate") and extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "finetune":
            return _cmd_finetune(args, extra)
        if args.command == "predict":
            return _cmd_predict(args, extra)
        if args.command == "evaluate":
            return _cmd_evaluate(args, extra)
        if args.command == "export":
            return _cmd_export(args)
        if args.command == "doctor":
            return _cmd_doctor()
        return _cmd_list(args.command)
    except TunekitError as exc:
        if args.debug:
            raise
        print(f"tunekit: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
