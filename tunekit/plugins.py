"""Plugin discovery: built-in plugins and the ``tunekit`` entry point group, through pluggy.

Built-in plugins (``classify``, the strategies, the heads, the model aliases) are loaded
through the same hooks as external ones. A plugin that fails to import, or raises inside
a hook, is reported with a warning naming it and skipped; the others keep working.
``TUNEKIT_DISABLE_PLUGINS=name1,name2`` disables plugins by name (entry point name or
built-in module name).
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import Registry

if TYPE_CHECKING:
    from .head import Head
    from .strategy import Strategy
    from .task import Task

ENTRY_POINT_GROUP = "tunekit"
DISABLE_ENV = "TUNEKIT_DISABLE_PLUGINS"

BUILTIN_PLUGINS = (
    "tunekit.head",
    "tunekit.models",
    "tunekit.strategies",
    "tunekit.classify",
)


class PluginWarning(UserWarning):
    """A plugin was skipped because it is broken."""


@attrs.frozen(kw_only=True)
class ModelAlias:
    """A backbone alias registered by a plugin: ``alias`` → ``target`` (hub id or path)."""

    alias: str
    target: str
    info: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class PluginRecord:
    """What one plugin is and what it did: shown by ``tunekit plugins``."""

    name: str
    source: str  # "builtin" or the distribution that provides the entry point
    version: str = ""
    registered: tuple[str, ...] = ()
    error: str | None = None


class PluginState:
    """Everything the plugins registered, built once and cached."""

    def __init__(self) -> None:
        self.tasks: Registry[type[Task]] = Registry("task")
        self.strategies: Registry[type[Strategy]] = Registry("strategy")
        self.heads: Registry[type[Head]] = Registry("head")
        self.models: Registry[ModelAlias] = Registry("model")
        self.records: list[PluginRecord] = []
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)


_state: PluginState | None = None
_lock = threading.Lock()


def disabled_plugins() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def get_state() -> PluginState:
    """Load every plugin (once) and return the registries."""
    global _state
    with _lock:
        if _state is None:
            _state = _load()
        return _state


def reset() -> None:
    """Forget loaded plugins so the next lookup discovers them again (tests, notebooks)."""
    global _state
    with _lock:
        _state = None


def _failure(exc: BaseException) -> str:
    """How a plugin failed, for ``tunekit plugins`` / ``doctor`` and the warning."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _load() -> PluginState:
    state = PluginState()
    disabled = disabled_plugins()
    modules: list[tuple[str, str, str, Callable[[], Any]]] = []
    for mod in BUILTIN_PLUGINS:
        modules.append((mod, "builtin", "", functools.partial(importlib.import_module, mod)))
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        modules.append(
            (
                ep.name,
                dist.metadata["Name"] if dist is not None else "?",
                dist.version if dist is not None else "",
                ep.load,
            )
        )
    loaded: list[tuple[str, str, str]] = []
    for name, source, version, load in modules:
        if name in disabled:
            state.records.append(
                PluginRecord(name=name, source=source, version=version, error="disabled")
            )
            continue
        try:
            plugin = load()
            state.manager.register(plugin, name=name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken plugin must not take tunekit down, even
            # one that calls sys.exit() (SystemExit) while importing
            msg = _failure(exc)
            warnings.warn(
                f"tunekit plugin {name!r} ({source}) failed to load and was skipped: {msg}",
                PluginWarning,
                stacklevel=2,
            )
            state.records.append(PluginRecord(name=name, source=source, version=version, error=msg))
            continue
        loaded.append((name, source, version))

    registered: dict[str, list[str]] = {name: [] for name, _, _ in loaded}
    errors: dict[str, str] = {}
    hooks = (
        ("tunekit_register_heads", state.heads, "head"),
        ("tunekit_register_strategies", state.strategies, "strategy"),
        ("tunekit_register_tasks", state.tasks, "task"),
        ("tunekit_register_models", state.models, "model"),
    )
    for hook_name, registry, kind in hooks:
        hook = getattr(state.manager.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order: built-ins first
            plugin_name = impl.plugin_name
            if plugin_name in errors:
                continue

            def register(
                *args: Any, _reg=registry, _kind=kind, _plugin=plugin_name, **info: Any
            ) -> None:
                if _kind == "model":
                    alias, target = args
                    _reg.add(
                        alias,
                        ModelAlias(alias=alias, target=str(target), info=info),
                        plugin=_plugin,
                    )
                    registered[_plugin].append(f"model:{alias}")
                else:
                    (obj,) = args
                    _VALIDATORS[_kind](obj, plugin=_plugin)
                    _reg.add(
                        obj.name, obj, aliases=tuple(getattr(obj, "aliases", ())), plugin=_plugin
                    )
                    registered[_plugin].append(f"{_kind}:{obj.name}")

            try:
                impl.function(register=register)
            except PluginError:
                raise  # a name clash is the user's to resolve, not something to skip
            except (Exception, SystemExit) as exc:
                msg = f"{type(exc).__name__} in {hook_name}: {exc}"
                warnings.warn(
                    f"tunekit plugin {plugin_name!r} raised in {hook_name} and was skipped: {exc!r}",
                    PluginWarning,
                    stacklevel=2,
                )
                errors[plugin_name] = msg
    for task_name in state.tasks.names():  # heads are all registered by now
        _check_head_option(state, task_name)
    for name, source, version in loaded:
        state.records.append(
            PluginRecord(
                name=name,
                source=source,
                version=version,
                registered=tuple(registered[name]),
                error=errors.get(name),
            )
        )
    return state


def get_head(name: str, *, task: Task | type[Task] | None = None) -> type[Head]:
    """The head class registered as *name* (or an alias).

    With *task*, the head's :attr:`~tunekit.head.Head.level` must be one of the task's
    ``head_levels``; otherwise a :class:`~tunekit.errors.ConfigError` names the heads that
    fit. Unknown names list close matches.

    Example::

        head_cls = get_head(self.config.head, task=self)   # in Task.build_head
        head = head_cls(backbone.hidden_size, num_labels)
    """
    from .errors import ConfigError

    head_cls = get_state().heads.get(name)
    if task is not None and head_cls.level not in task.head_levels:
        heads = get_state().heads
        fitting = [n for n in heads.names() if heads.get(n).level in task.head_levels]
        raise ConfigError(
            f"head={name!r} is a {head_cls.level}-level head, but task {task.name!r} takes "
            f"{' or '.join(task.head_levels)}-level heads: use one of {', '.join(fitting)}"
        )
    return head_cls


#: methods a task must define, by ``Task.supervised``
REQUIRED_TASK_METHODS = {
    True: ("read", "parse_inputs", "encode", "build_head", "loss", "decode"),
    False: ("read", "parse_inputs", "encode", "build_head", "decode", "fit"),
}


def _validate_task(cls: Any, *, plugin: str) -> None:
    from .head import HEAD_LEVELS
    from .task import Task

    what = f"plugin {plugin!r} registered task {_name(cls)}"
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise PluginError(f"{what}, which is not a tunekit.plugin.Task subclass")
    missing = [m for m in REQUIRED_TASK_METHODS[bool(cls.supervised)] if _inherited(cls, m, Task)]
    if missing:
        raise PluginError(
            f"{what}, which does not implement {', '.join(f'{m}()' for m in missing)}; "
            f"every {'supervised' if cls.supervised else 'unsupervised'} task defines "
            f"{', '.join(REQUIRED_TASK_METHODS[bool(cls.supervised)])}"
        )
    _check_config(cls, what)
    bad = [lv for lv in cls.head_levels if lv not in HEAD_LEVELS] or not cls.head_levels
    if bad:
        raise PluginError(
            f"{what} with head_levels={cls.head_levels!r}; use one or more of {', '.join(HEAD_LEVELS)}"
        )


def _validate_strategy(cls: Any, *, plugin: str) -> None:
    from .strategy import Strategy

    what = f"plugin {plugin!r} registered strategy {_name(cls)}"
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise PluginError(f"{what}, which is not a tunekit.plugin.Strategy subclass")
    _check_config(cls, what)


def _validate_head(cls: Any, *, plugin: str) -> None:
    from .head import HEAD_LEVELS, Head

    what = f"plugin {plugin!r} registered head {_name(cls)}"
    if not (isinstance(cls, type) and issubclass(cls, Head)):
        raise PluginError(f"{what}, which is not a tunekit.plugin.Head subclass")
    if cls.level not in HEAD_LEVELS:
        raise PluginError(
            f"{what} with level={cls.level!r}; set the class attribute level to one of "
            f"{', '.join(HEAD_LEVELS)} (what the head predicts)"
        )


_VALIDATORS: dict[str, Callable[..., None]] = {
    "task": _validate_task,
    "strategy": _validate_strategy,
    "head": _validate_head,
}


def _check_config(cls: Any, what: str) -> None:
    if not attrs.has(cls.Config):
        raise PluginError(
            f"{what}, whose Config ({_name(cls.Config)}) is not an attrs class; declare it "
            f"with @attrs.frozen(kw_only=True) so that options are checked and saved"
        )


def _check_head_option(state: PluginState, task_name: str) -> None:
    """A task whose ``head`` option defaults to a registered head of a level it does not
    take could never train with its defaults: refuse it at registration."""
    task_cls = state.tasks.get(task_name)
    field = attrs.fields_dict(task_cls.Config).get("head")
    default = getattr(field, "default", None)
    if not isinstance(default, str) or default not in state.heads:
        return
    level = state.heads.get(default).level
    if level not in task_cls.head_levels:
        raise PluginError(
            f"plugin {state.tasks.owner(task_name)!r} registered task {task_name!r} whose default "
            f"head={default!r} is {level}-level, but the task takes "
            f"{' or '.join(task_cls.head_levels)}-level heads (Task.head_levels); change one of them"
        )


def _inherited(cls: type, method: str, base: type) -> bool:
    return getattr(cls, method, None) is getattr(base, method, None)


def _name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}" if isinstance(obj, type) else repr(obj)
