"""Sessions: tests (core + every plugin), demo, lint.

Torch is pinned first (a CPU build here; a bare requirement could pull a multi-GB CUDA
build), then tunekit and the plugins.
"""

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"
ROOT = Path(__file__).parent
PLUGINS = sorted(str(p) for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())


def install_all(session: nox.Session, *extras: str) -> None:
    session.install(TORCH)
    session.install("-e", f".[{','.join(('embedded', *extras))}]")
    for plugin in PLUGINS:
        session.install(plugin)


@nox.session
def tests(session: nox.Session) -> None:
    """Core and plugin tests (fast ones; ``nox -s tests -- -m slow`` for real-data runs)."""
    install_all(session, "test")
    args = session.posargs or ["-m", "not slow"]
    test_dirs = ["tests", *(f"{p}/tests" for p in PLUGINS if Path(p, "tests").is_dir())]
    session.run("pytest", *test_dirs, *args, env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})


@nox.session
def demo(session: nox.Session) -> None:
    """Fine-tune the embedded model on Rotten-Tomatoes snippets; print the epoch table."""
    install_all(session)
    session.run("python", "examples/quickstart.py", env={"HF_HUB_OFFLINE": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
