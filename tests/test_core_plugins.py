"""Plugin registry and hooks with fake plugins; external discovery through the ``tunekit``
entry point group; unknown names and misspelled options listing close matches; `tunekit doctor`."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
import types

import pytest
import torch

import tunekit
from tunekit import plugins
from tunekit.errors import ConfigError, PluginError, TunekitError, UnknownNameError
from tunekit.head import LinearHead
from tunekit.plugins import PluginWarning
from tunekit.task import Task


class FakeEntryPoint:
    """Quacks like ``importlib.metadata.EntryPoint`` for ``plugins._load``."""

    def __init__(self, name, load, dist=None):
        self.name = name
        self._load = load
        self.dist = dist

    def load(self):
        return self._load()


class FakeDist:
    def __init__(self, name, version="1.0"):
        self.metadata = {"Name": name}
        self.version = version


class CompleteTask(Task):
    """Defines every method registration requires (bodies unused by these tests)."""

    def read(self, source, *, name="data"):
        return list(source)

    def parse_inputs(self, inputs):
        return [{"text": x} for x in inputs]

    def encode(self, records, tokenizer, *, max_length, with_labels):
        return []

    def build_head(self, backbone):
        return LinearHead(backbone.hidden_size, 2)

    def loss(self, outputs, batch):
        return outputs["logits"].sum()

    def decode(self, outputs, features, records, **options):
        return [None] * len(records)


def task_class(name, aliases=(), base=CompleteTask, **attributes):
    return type(
        f"Task_{name.replace('-', '_')}",
        (base,),
        {"name": name, "aliases": tuple(aliases), **attributes},
    )


def head_class(name, level):
    return type(f"Head_{name.replace('-', '_')}", (LinearHead,), {"name": name, "level": level})


def plugin_module(name, *, tasks=(), models=(), heads=(), raises_in=None):
    """A plugin module whose hooks register *tasks* / *models* / *heads* (or raise in hook
    *raises_in*)."""
    mod = types.ModuleType(name)

    @tunekit.hookimpl
    def tunekit_register_heads(register):
        for h in heads:
            register(h)

    mod.tunekit_register_heads = tunekit_register_heads

    @tunekit.hookimpl
    def tunekit_register_tasks(register):
        if raises_in == "tasks":
            raise RuntimeError(f"boom from {name}")
        for t in tasks:
            register(t)

    @tunekit.hookimpl
    def tunekit_register_models(register):
        if raises_in == "models":
            raise RuntimeError(f"boom from {name}")
        for alias, target in models:
            register(alias, target, language="xx")

    mod.tunekit_register_tasks = tunekit_register_tasks
    mod.tunekit_register_models = tunekit_register_models
    return mod


@pytest.fixture
def fake_plugins(monkeypatch):
    """Install fake entry points: ``fake_plugins(ep, ep, ...)`` then look things up."""

    def install(*eps):
        monkeypatch.setattr(
            plugins,
            "entry_points",
            lambda group: list(eps) if group == plugins.ENTRY_POINT_GROUP else [],
        )
        plugins.reset()

    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    plugins.reset()
    yield install
    plugins.reset()


def ep_for(module, dist=None):
    return FakeEntryPoint(module.__name__, lambda: module, dist)


def records():
    return {r.name: r for r in plugins.get_state().records}


def test_builtin_plugins_register_through_the_hooks(fake_plugins):
    fake_plugins()
    assert "classify" in tunekit.list_tasks()
    assert tunekit.get_task("sentiment") is tunekit.get_task("classify")
    assert "full" in tunekit.list_strategies()
    models = tunekit.list_models()
    assert {"minilm", "ernie-gram", "bert-base-chinese", "bert-base", "roberta-wwm"} <= set(models)
    assert models["ernie-gram"].target == "nghuyong/ernie-gram-zh"
    assert models["bert-base"].target == "bert-base-uncased"
    recs = records()
    assert recs["tunekit.classify"].source == "builtin"
    assert "task:classify" in recs["tunekit.classify"].registered


def test_fake_plugin_registers_task_and_model(fake_plugins):
    good = plugin_module(
        "good_plugin", tasks=[task_class("echo", aliases=["echo-alias"])], models=[("tiny-x", "/m")]
    )
    fake_plugins(ep_for(good, FakeDist("tunekit-good", "0.3")))
    assert tunekit.get_task("echo").name == "echo"
    assert tunekit.get_task("echo-alias") is tunekit.get_task("echo")
    assert tunekit.list_models()["tiny-x"].target == "/m"
    assert tunekit.list_models()["tiny-x"].info == {"language": "xx"}
    rec = records()["good_plugin"]
    assert (rec.source, rec.version, rec.error) == ("tunekit-good", "0.3", None)
    assert set(rec.registered) == {"task:echo", "model:tiny-x"}
    assert plugins.get_state().tasks.owner("echo-alias") == "good_plugin"


def test_plugin_that_fails_to_import_is_skipped_with_a_warning(fake_plugins):
    def broken():
        raise ImportError("No module named 'missing_dependency'")

    good = plugin_module("good_plugin", tasks=[task_class("echo")])
    fake_plugins(FakeEntryPoint("broken_plugin", broken, FakeDist("tunekit-broken")), ep_for(good))
    with pytest.warns(
        PluginWarning,
        match=r"'broken_plugin' \(tunekit-broken\) failed to load.*missing_dependency",
    ):
        tasks = tunekit.list_tasks()
    assert "echo" in tasks and "classify" in tasks  # the rest keep working
    assert "missing_dependency" in records()["broken_plugin"].error


def test_plugin_that_raises_in_a_hook_is_skipped_with_a_warning(fake_plugins):
    bad = plugin_module("raising_plugin", tasks=[task_class("never")], raises_in="tasks")
    good = plugin_module("good_plugin", tasks=[task_class("echo")])
    fake_plugins(ep_for(bad), ep_for(good))
    with pytest.warns(
        PluginWarning,
        match=r"'raising_plugin' raised in tunekit_register_tasks.*boom from raising_plugin",
    ):
        tasks = tunekit.list_tasks()
    assert "never" not in tasks
    assert "echo" in tasks and "classify" in tasks
    assert "boom" in records()["raising_plugin"].error
    assert records()["good_plugin"].error is None


def test_duplicate_name_is_an_error_naming_both_plugins(fake_plugins):
    one = plugin_module("plugin_one", tasks=[task_class("echo")])
    two = plugin_module("plugin_two", tasks=[task_class("echo")])
    fake_plugins(ep_for(one), ep_for(two))
    with pytest.raises(PluginError) as err:
        tunekit.list_tasks()
    msg = str(err.value)
    assert "'echo'" in msg and "'plugin_one'" in msg and "'plugin_two'" in msg
    assert "TUNEKIT_DISABLE_PLUGINS" in msg


def test_duplicate_of_a_builtin_name_or_alias_names_the_builtin(fake_plugins):
    clash = plugin_module("clash_plugin", tasks=[task_class("my-task", aliases=["sentiment"])])
    fake_plugins(ep_for(clash))
    with pytest.raises(PluginError, match=r"'sentiment'.*'tunekit.classify'.*'clash_plugin'"):
        tunekit.get_task("classify")


def test_disable_plugins_env(fake_plugins, monkeypatch):
    one = plugin_module("plugin_one", tasks=[task_class("echo")])
    two = plugin_module("plugin_two", tasks=[task_class("echo")])  # would clash if enabled
    fake_plugins(ep_for(one), ep_for(two))
    monkeypatch.setenv(plugins.DISABLE_ENV, " plugin_two , tunekit.classify")
    plugins.reset()
    assert tunekit.list_tasks() == ["echo"]
    assert records()["plugin_two"].error == "disabled"
    assert records()["tunekit.classify"].error == "disabled"
    with pytest.raises(UnknownNameError, match="unknown task 'classify'"):
        tunekit.get_task("classify")


def test_reset_rediscovers(fake_plugins):
    fake_plugins()
    assert "echo" not in tunekit.list_tasks()
    fake_plugins(ep_for(plugin_module("late_plugin", tasks=[task_class("echo")])))
    assert "echo" in tunekit.list_tasks()


EXTERNAL_PLUGIN = '''
import tunekit
from tunekit.plugin import LinearHead, Task, text_inputs


class ShoutTask(Task):
    """A task from an external distribution (registration checks its methods exist)."""

    name = "shout"
    aliases = ("yell",)

    def read(self, source, *, name="data"):
        return text_inputs(source)

    parse_inputs = read

    def encode(self, records, tokenizer, *, max_length, with_labels):
        return []

    def build_head(self, backbone):
        return LinearHead(backbone.hidden_size, 2)

    def loss(self, outputs, batch):
        return outputs["logits"].sum()

    def decode(self, outputs, features, records, **options):
        return [None] * len(records)


@tunekit.hookimpl
def tunekit_register_tasks(register):
    register(ShoutTask)


@tunekit.hookimpl
def tunekit_register_models(register):
    register("shout-bert", "/nowhere/shout-bert", language="en")
'''


def test_external_plugin_discovered_through_entry_point_group(tmp_path):
    site = tmp_path / "site"
    (site / "tunekit_shout").mkdir(parents=True)
    (site / "tunekit_shout" / "__init__.py").write_text("")
    (site / "tunekit_shout" / "plugin.py").write_text(EXTERNAL_PLUGIN)
    dist = site / "tunekit_shout-0.7.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tunekit-shout\nVersion: 0.7\n")
    (dist / "entry_points.txt").write_text("[tunekit]\nshout = tunekit_shout.plugin\n")
    script = textwrap.dedent(
        """
        import json, tunekit
        from tunekit.plugins import get_state
        rec = next(r for r in get_state().records if r.name == "shout")
        print(json.dumps({
            "tasks": tunekit.list_tasks(),
            "alias": tunekit.get_task("yell").__module__,
            "model": tunekit.list_models()["shout-bert"].target,
            "record": [rec.source, rec.version, list(rec.registered), rec.error],
        }))
        """
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "shout" in got["tasks"] and "classify" in got["tasks"]
    assert got["alias"] == "tunekit_shout.plugin"
    assert got["model"] == "/nowhere/shout-bert"
    assert got["record"] == ["tunekit-shout", "0.7", ["task:shout", "model:shout-bert"], None]


# ---- unknown names / options -----------------------------------------------------------

ROWS = [{"text": "good film", "label": "pos"}, {"text": "bad film", "label": "neg"}] * 4


@pytest.mark.parametrize(
    ("call", "kind", "close"),
    [
        (lambda: tunekit.get_task("clasify"), "task", "classify"),
        (lambda: tunekit.get_strategy("ful"), "strategy", "full"),
        (lambda: tunekit.finetune(task="classfy", data=ROWS), "task", "classify"),
        (
            lambda: tunekit.finetune(task="classify", data=ROWS, strategy="fulll"),
            "strategy",
            "full",
        ),
        (
            lambda: tunekit.finetune(task="classify", data=ROWS, model="minilmm", eval_split=0),
            "model",
            "minilm",
        ),
    ],
)
def test_unknown_names_list_close_matches(call, kind, close):
    plugins.reset()
    with pytest.raises(UnknownNameError) as err:
        call()
    assert isinstance(err.value, TunekitError)
    assert err.value.kind == kind
    assert close in err.value.close_matches
    assert f"did you mean {close!r}" in str(err.value)


def test_unknown_name_without_close_match_lists_known_names():
    with pytest.raises(UnknownNameError) as err:
        tunekit.get_task("zzzzzz")
    assert "did you mean" not in str(err.value)
    assert "Known tasks:" in str(err.value) and "classify" in str(err.value)


@pytest.mark.parametrize(
    ("option", "close"),
    [
        ("epoch", "epochs"),
        ("learning_rat", "learning_rate"),
        ("text_colum", "text_column"),
        ("max_lenght", "max_length"),
    ],
)
def test_misspelled_option_is_an_error_with_close_matches(option, close):
    with pytest.raises(ConfigError) as err:
        tunekit.finetune(task="classify", data=ROWS, **{option: 1})
    msg = str(err.value)
    assert f"unknown option {option!r}" in msg
    assert f"did you mean {close!r}" in msg


def test_bad_option_value_is_a_config_error():
    with pytest.raises(ConfigError, match="precision='fp64'"):
        tunekit.finetune(task="classify", data=ROWS, precision="fp64")
    with pytest.raises(ConfigError, match="epochs=0"):
        tunekit.finetune(task="classify", data=ROWS, epochs=0)
    with pytest.raises(ConfigError, match="long_text='split'"):
        tunekit.finetune(task="classify", data=ROWS, long_text="split")


# ---- tunekit doctor ----------------------------------------------------------------------


def doctor(capsys) -> tuple[int, str]:
    from tunekit import cli

    status = cli.main(["doctor"])
    return status, capsys.readouterr().out


def test_doctor_lists_versions_device_and_builtin_registrations(fake_plugins, capsys):
    fake_plugins()
    status, out = doctor(capsys)
    assert status == 0
    for name in ("python", "tunekit", "torch", "transformers", "peft", "accelerate"):
        assert re.search(rf"^{name}\s+\S", out, re.M), name
    assert re.search(rf"^torch\s+{re.escape(torch.__version__)}$", out, re.M)
    assert re.search(
        rf"^transformers\s+{re.escape(importlib.metadata.version('transformers'))}$", out, re.M
    )
    assert re.search(r"^device\s+(cpu: \d+ usable CPUs|cuda: \d+ ×|mps)", out, re.M)
    assert "tunekit.strategies  [builtin]" in out
    assert re.search(r"^\s+strategies: full, frozen, lora", out, re.M)
    assert re.search(r"^\s+tasks: classify$", out, re.M)
    assert re.search(r"^\s+heads: linear, mlp$", out, re.M)
    assert out.rstrip().endswith("no problem found")


def test_doctor_lists_failed_plugins_and_exits_with_one(fake_plugins, capsys, monkeypatch):
    def broken():
        raise ImportError("No module named 'missing_dependency'")

    good = plugin_module("good_plugin", tasks=[task_class("echo")], models=[("tiny-x", "/m")])
    raising = plugin_module("raising_plugin", tasks=[task_class("never")], raises_in="tasks")
    off = plugin_module("off_plugin", tasks=[task_class("off")])
    fake_plugins(
        FakeEntryPoint("broken_plugin", broken, FakeDist("tunekit-broken", "0.2")),
        ep_for(good, FakeDist("tunekit-good", "1.4")),
        ep_for(raising, FakeDist("tunekit-raising", "3.0")),
        ep_for(off),
    )
    monkeypatch.setenv(plugins.DISABLE_ENV, "off_plugin")
    status, out = doctor(capsys)
    assert status == 1
    assert (
        "broken_plugin  [tunekit-broken 0.2]  FAILED: ImportError: No module named 'missing_dependency'"
        in out
    )
    assert re.search(
        r"raising_plugin  \[tunekit-raising 3.0\]  FAILED: .*boom from raising_plugin", out
    )
    assert "good_plugin  [tunekit-good 1.4]" in out
    assert re.search(r"good_plugin.*\n\s+tasks: echo\n\s+models: tiny-x", out)
    assert "off_plugin  [?]  disabled (TUNEKIT_DISABLE_PLUGINS)" in out
    assert out.rstrip().endswith("2 problem(s) found")  # a disabled plugin is not a problem
    from tunekit.doctor import diagnose

    failures = diagnose().failures
    assert len(failures) == 2 and any("broken_plugin" in f for f in failures)


def test_doctor_reports_a_name_clash_naming_both_plugins(fake_plugins, capsys):
    one = plugin_module("plugin_one", tasks=[task_class("echo")])
    two = plugin_module("plugin_two", tasks=[task_class("echo")])
    fake_plugins(ep_for(one), ep_for(two))
    status, out = doctor(capsys)
    assert status == 1
    assert re.search(r"FAILED: .*'echo'.*'plugin_one'.*'plugin_two'", out)
    assert "torch" in out  # versions are still reported


# ---- registration validates what plugins register -------------------------------------


def test_task_missing_a_required_method_is_refused_at_registration(fake_plugins):
    half = task_class("half-done", base=Task, read=CompleteTask.read, encode=CompleteTask.encode)
    fake_plugins(ep_for(plugin_module("half_plugin", tasks=[half])))
    with pytest.raises(PluginError) as exc:
        plugins.get_state()
    message = str(exc.value)
    assert "plugin 'half_plugin'" in message and "Task_half_done" in message
    for method in ("parse_inputs()", "build_head()", "loss()", "decode()"):
        assert method in message
    assert "read()" not in message.split("implement")[1].split(";")[0]


def test_unsupervised_task_must_define_fit_not_loss(fake_plugins):
    unsupervised = task_class("clusters", supervised=False, loss=Task.loss)
    fake_plugins(ep_for(plugin_module("cluster_plugin", tasks=[unsupervised])))
    with pytest.raises(PluginError, match=r"plugin 'cluster_plugin'.*does not implement fit\(\)"):
        plugins.get_state()


def test_config_that_is_not_an_attrs_class_is_refused(fake_plugins):
    class PlainConfig:
        def __init__(self, size=1):
            self.size = size

    task = task_class("plain-config", Config=PlainConfig)
    fake_plugins(ep_for(plugin_module("plain_plugin", tasks=[task])))
    with pytest.raises(
        PluginError, match=r"plugin 'plain_plugin'.*PlainConfig.*not an attrs class"
    ):
        plugins.get_state()


def test_strategy_config_that_is_not_an_attrs_class_is_refused(fake_plugins):
    from tunekit.strategy import Strategy

    strategy = type("OddStrategy", (Strategy,), {"name": "odd", "Config": dict})
    mod = plugin_module("odd_plugin")

    @tunekit.hookimpl
    def tunekit_register_strategies(register):
        register(strategy)

    mod.tunekit_register_strategies = tunekit_register_strategies
    fake_plugins(ep_for(mod))
    with pytest.raises(PluginError, match=r"plugin 'odd_plugin' registered strategy .*OddStrategy"):
        plugins.get_state()


@pytest.mark.parametrize("level", ["", "sentence"])
def test_head_without_a_valid_level_is_refused(fake_plugins, level):
    fake_plugins(ep_for(plugin_module("head_plugin", heads=[head_class("odd-head", level)])))
    with pytest.raises(PluginError, match=r"plugin 'head_plugin' registered head .*level=") as exc:
        plugins.get_state()
    assert "sequence, token, span, lm" in str(exc.value)


def test_task_whose_default_head_has_another_level_is_refused(fake_plugins):
    import attrs

    @attrs.frozen(kw_only=True)
    class TokenConfig:
        head: str = "linear"  # a sequence-level head

    tagger = task_class("tagger", Config=TokenConfig, head_levels=("token",))
    fake_plugins(ep_for(plugin_module("tagger_plugin", tasks=[tagger])))
    with pytest.raises(PluginError) as exc:
        plugins.get_state()
    assert "plugin 'tagger_plugin'" in str(exc.value)
    assert "head='linear' is sequence-level" in str(exc.value)


def test_classify_refuses_a_token_level_head(fake_plugins):
    token_head = head_class("fake-crf", "token")
    fake_plugins(ep_for(plugin_module("crf_plugin", heads=[token_head])))
    classify = tunekit.get_task("classify")
    task = classify(classify.Config(head="fake-crf"))
    task.setup([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    with pytest.raises(ConfigError, match="head='fake-crf' is a token-level head") as exc:
        task.build_head(types.SimpleNamespace(hidden_size=8))
    assert "linear" in str(exc.value) and "mlp" in str(exc.value)  # the heads that fit
    assert plugins.get_head("fake-crf") is token_head  # without a task: any level
    assert plugins.get_head("mlp", task=classify).level == "sequence"


def test_every_registered_head_and_task_of_the_installed_plugins_validates():
    plugins.reset()
    state = plugins.get_state()
    assert not [r for r in state.records if r.error], state.records
    for name in state.heads.names():
        assert state.heads.get(name).level in ("sequence", "token", "span", "lm")


def test_plugins_pin_a_compatible_range_of_tunekit():
    """Every first-party plugin and the example plugin accept this tunekit and not the next
    minor release (whose private modules, and maybe its plugin API, may differ)."""
    from pathlib import Path

    from packaging.requirements import Requirement
    from packaging.version import Version

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(__file__).resolve().parents[1]
    projects = [
        *sorted(root.glob("plugins/*/pyproject.toml")),
        root / "examples/plugin-ordinal/pyproject.toml",
    ]
    assert len(projects) >= 6
    current = Version(tunekit.__version__)
    next_minor = Version(f"{current.major}.{current.minor + 1}")
    for path in projects:
        deps = [Requirement(d) for d in tomllib.loads(path.read_text())["project"]["dependencies"]]
        (tk,) = [d for d in deps if d.name == "tunekit"]
        assert current in tk.specifier, (path, str(tk))
        assert next_minor not in tk.specifier, (path, str(tk))
