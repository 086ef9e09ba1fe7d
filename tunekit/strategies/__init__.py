"""Built-in plugin: the fine-tuning strategies."""

from ..hookspecs import hookimpl
from .full import FullStrategy


@hookimpl
def tunekit_register_strategies(register):
    register(FullStrategy)
