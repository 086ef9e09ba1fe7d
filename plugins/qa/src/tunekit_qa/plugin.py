"""Entry point of the ``tunekit-qa`` plugin: the ``qa`` task and its span head."""

import tunekit

from .heads import SpanHead
from .task import QATask


@tunekit.hookimpl
def tunekit_register_tasks(register):
    register(QATask)


@tunekit.hookimpl
def tunekit_register_heads(register):
    register(SpanHead)
