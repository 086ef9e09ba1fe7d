"""Entry point module (``[project.entry-points.tunekit]``): registers the ``ordinal`` task."""

import tunekit

from .task import OrdinalTask


@tunekit.hookimpl
def tunekit_register_tasks(register):
    register(OrdinalTask)
