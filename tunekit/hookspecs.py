"""Hook specifications: the only way tasks, strategies, heads and models enter tunekit.

A plugin is a module (or object) with functions marked ``@tunekit.hookimpl`` named like
the specs below. External plugins announce that module in the ``tunekit`` entry point
group of their distribution::

    [project.entry-points.tunekit]
    my_task = "my_package.plugin"

Built-in tasks and strategies are registered through exactly the same hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "tunekit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def tunekit_register_tasks(register: Callable[[Any], None]) -> None:
    """Register :class:`tunekit.Task` subclasses.

    Example::

        @tunekit.hookimpl
        def tunekit_register_tasks(register):
            register(MyTask)   # MyTask.name and MyTask.aliases are claimed
    """


@hookspec
def tunekit_register_strategies(register: Callable[[Any], None]) -> None:
    """Register :class:`tunekit.Strategy` subclasses (``full``, ``lora``, ...)."""


@hookspec
def tunekit_register_heads(register: Callable[[Any], None]) -> None:
    """Register :class:`tunekit.Head` subclasses by their ``name`` (``linear``, ``mlp``, ``crf``...)."""


@hookspec
def tunekit_register_models(register: Callable[..., None]) -> None:
    """Register backbone aliases: ``register(alias, target, **info)``.

    *target* is a hub id or a local path; *info* is free-form metadata shown by
    ``tunekit models`` (``language=``, ``description=``...).

    Example::

        @tunekit.hookimpl
        def tunekit_register_models(register):
            register("ernie-gram", "nghuyong/ernie-gram-zh", language="zh")
    """
