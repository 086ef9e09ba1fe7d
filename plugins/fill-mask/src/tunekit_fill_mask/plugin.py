"""Entry point module: registers the ``fill-mask`` task with tunekit."""

import tunekit

from .task import FillMaskTask


@tunekit.hookimpl
def tunekit_register_tasks(register):
    register(FillMaskTask)
