"""Built-in plugin: registers the core heads (``linear``, ``mlp``)."""

from .head import LinearHead, MLPHead
from .hookspecs import hookimpl


@hookimpl
def tunekit_register_heads(register):
    register(LinearHead)
    register(MLPHead)
