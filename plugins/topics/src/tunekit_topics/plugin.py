"""Entry point module: registers the ``topics`` task with tunekit."""

import tunekit

from .task import TopicsTask


@tunekit.hookimpl
def tunekit_register_tasks(register):
    register(TopicsTask)
