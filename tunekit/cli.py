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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunekit", description="Fine-tune transformer encoders for NLP tasks."
    )
    parser.add_argument("--version", action="version", version=f"tunekit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    ft = sub.add_parser(
        "finetune",
        help="fine-tune a model and save a bundle",
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
    ft.add_argument("--output", default=None, help="directory to write the bundle to")
    ft.add_argument(
        "--config", default=None, help="JSON/YAML file of finetune() options (flags override it)"
    )
    ft.add_argument(
        "--plots",
        default=None,
        help="directory to write the learning curve (and, for classification, the confusion matrix "
        "on the evaluation data) to",
    )

    pr = sub.add_parser("predict", help="predict with a saved bundle")
    pr.add_argument("bundle")
    pr.add_argument("inputs", nargs="*", help="inputs (texts; JSON for structured inputs)")
    pr.add_argument(
        "--input",
        dest="input_file",
        default=None,
        help="file with one input per line (text or JSON)",
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

    ev = sub.add_parser("evaluate", help="evaluate a saved bundle on labelled data")
    ev.add_argument("bundle")
    ev.add_argument("--data", required=True)

    ex = sub.add_parser(
        "export",
        help="export a saved bundle as a transformers model (save_pretrained layout)",
        description="Write BUNDLE as a 🤗 transformers model directory that transformers.pipeline() loads "
        "with the same predictions (adapters merged, head mapped onto the AutoModelFor... class).",
    )
    ex.add_argument("bundle")
    ex.add_argument("output", help="directory to write the exported model to")
    ex.add_argument(
        "--format", default="hf", help="hf (transformers, default) or onnx (needs optimum)"
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
    if args.output:
        from .atomic import check_writable_directory

        check_writable_directory(args.output, option="--output")
    run = finetune(task, **options)
    print(run.history)
    if run.metrics:
        print(
            "metrics: "
            + ", ".join(
                f"{k}={v:.4f}" for k, v in run.metrics.items() if isinstance(v, (int, float))
            )
        )
    if args.output:
        print(f"saved bundle: {run.save(args.output)}")
    if args.plots:
        plots = Path(args.plots)
        print(f"learning curve: {run.plot(plots / 'learning_curve.png')}")
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
        items += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
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


def _cmd_predict(args: argparse.Namespace) -> int:
    from .api import load

    options = {}
    for item in args.options:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--option {item!r}: write NAME=VALUE, e.g. --option top_k=5")
        options[name.strip().replace("-", "_")] = _value(value)
    run = load(args.bundle)
    inputs = _read_inputs(args)
    for pred in run.predict(inputs, batch_size=args.batch_size, **options):
        print(json.dumps(pred, ensure_ascii=False, default=str))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .api import load

    metrics = load(args.bundle).evaluate(args.data)
    for key, value in metrics.items():
        print(f"{key}\t{value:.6f}" if isinstance(value, float) else f"{key}\t{value}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .api import load
    from .export import EXPORT_FILE

    path = load(args.bundle).export(args.output, format=args.format)
    print(f"exported: {path}")
    info_file = Path(path) / EXPORT_FILE
    if info_file.is_file():
        info = json.loads(info_file.read_text(encoding="utf-8"))
        options = "".join(f", {k}={v!r}" for k, v in info["pipeline_options"].items())
        print(f'load it with: transformers.pipeline("{info["pipeline"]}", model="{path}"{options})')
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
        if args.command != "finetune" and extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "finetune":
            return _cmd_finetune(args, extra)
        if args.command == "predict":
            return _cmd_predict(args)
        if args.command == "evaluate":
            return _cmd_evaluate(args)
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
