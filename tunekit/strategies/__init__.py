"""Built-in plugin: the fine-tuning strategies (one module each), registered through the
same ``tunekit_register_strategies`` hook external plugins use."""

from ..hookspecs import hookimpl
from .frozen import FrozenStrategy
from .full import FullStrategy
from .layer_mix import LayerMixStrategy, ScalarMix
from .lora import LoraStrategy
from .peft_method import PeftStrategy
from .top_k import TopKStrategy

__all__ = [
    "FrozenStrategy",
    "FullStrategy",
    "LayerMixStrategy",
    "LoraStrategy",
    "PeftStrategy",
    "ScalarMix",
    "TopKStrategy",
]


@hookimpl
def tunekit_register_strategies(register):
    for strategy in (
        FullStrategy,
        FrozenStrategy,
        LoraStrategy,
        PeftStrategy,
        LayerMixStrategy,
        TopKStrategy,
    ):
        register(strategy)
