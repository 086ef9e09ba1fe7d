"""Entry point of the ``tunekit-tagging`` plugin: the ``token-tagging`` task and its heads."""

import tunekit

from .heads import CRFHead, TokenClassifierHead
from .task import TaggingTask


@tunekit.hookimpl
def tunekit_register_tasks(register):
    register(TaggingTask)


@tunekit.hookimpl
def tunekit_register_heads(register):
    register(TokenClassifierHead)
    register(CRFHead)
