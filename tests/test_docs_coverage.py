"""The docs keep up with the code: every hook, CLI command, registered first-party task
and strategy, and training option is mentioned in ``docs/``, and every page is in the
site's nav."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import attrs
import pytest

import tunekit
from tunekit import hookspecs
from tunekit.cli import build_parser
from tunekit.config import TrainingConfig
from tunekit.plugins import get_state

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PLUGIN_DIRS = sorted(
    p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file()
)
FIRST_PARTY = ("tunekit.", *(f"tunekit_{name.replace('-', '_')}." for name in PLUGIN_DIRS))


def docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("**/*.md")))


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def hook_names() -> list[str]:
    return sorted(
        n for n in dir(hookspecs) if n.startswith("tunekit_") and callable(getattr(hookspecs, n))
    )


def cli_commands() -> list[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


def first_party(registry) -> list[str]:
    return [n for n in registry.names() if registry.get(n).__module__.startswith(FIRST_PARTY)]


def missing(names, text: str, pattern: str) -> list[str]:
    return [n for n in names if not re.search(pattern.format(re.escape(n)), text, re.M)]


def test_the_introspection_finds_what_exists():
    # guards against this test passing because it looks at nothing
    assert "tunekit_register_tasks" in hook_names() and len(hook_names()) >= 4
    assert {"finetune", "predict", "evaluate", "tasks"} <= set(cli_commands())
    assert "classify" in first_party(get_state().tasks)
    assert {"full", "lora", "frozen"} <= set(first_party(get_state().strategies))


def test_every_hook_is_documented():
    gaps = missing(hook_names(), page("plugins.md"), r"`{}\b")
    assert not gaps, f"hooks not documented in docs/plugins.md: {gaps}"


def test_every_cli_command_is_documented():
    gaps = missing(cli_commands(), page("cli.md"), r"^#+ .*`tunekit {}`")
    assert not gaps, f"CLI commands without a heading `tunekit <command>` in docs/cli.md: {gaps}"


def test_every_task_has_docs():
    text = docs_text()
    tasks = first_party(get_state().tasks)
    gaps = [
        t
        for t in tasks
        if not (DOCS / f"{t}.md").is_file()
        and not re.search(rf"""task=["']{re.escape(t)}["']|--task {re.escape(t)}\b""", text)
    ]
    assert not gaps, (
        f'tasks without docs/<task>.md or a runnable example (task="..." or --task ...) in docs/: {gaps}'
    )


def test_every_strategy_is_documented():
    gaps = missing(first_party(get_state().strategies), page("strategies.md"), r"`{}`")
    assert not gaps, f"strategies not mentioned in docs/strategies.md: {gaps}"


def test_every_training_option_is_documented():
    names = [f.name for f in attrs.fields(TrainingConfig)]
    gaps = missing(names, page("configuration.md"), r"^\| `{}` \|")
    assert not gaps, f"TrainingConfig options without a row in docs/configuration.md: {gaps}"


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.glob("**/*.md"))
    gaps = [p for p in pages if not re.search(rf":\s*{re.escape(p)}\s*$", nav, re.M)]
    assert not gaps, f"pages missing from mkdocs.yml nav: {gaps}"


def test_api_reference_names_exist():
    import importlib

    for target in re.findall(r"^::: ([\w.]+)", page("api.md"), re.M):
        module, _, attr = target.rpartition(".")
        try:
            importlib.import_module(target)
        except ImportError:
            assert hasattr(importlib.import_module(module), attr), target


@pytest.mark.parametrize("name", ["check_task", "TaskContract", "make_tiny_model"])
def test_plugin_kit_is_documented(name):
    assert name in page("plugins.md") and hasattr(tunekit.testing, name)
