"""tunekit: fine-tune pretrained transformer encoders for every NLP task, with any strategy.

Example::

    import tunekit
    run = tunekit.finetune(task="classify", data="reviews.csv", epochs=3)
    print(run.history)
    run.save("out/sentiment")
    tunekit.load("out/sentiment").predict("what a wonderful film")
"""

from .__about__ import __version__
from .api import finetune, get_strategy, get_task, list_models, list_strategies, list_tasks, load
from .config import TrainingConfig
from .errors import (
    BundleError,
    ConfigError,
    DataError,
    ExportError,
    ModelNotFoundError,
    PluginError,
    TrainingError,
    TunekitError,
    UnknownNameError,
)
from .head import Head
from .hookspecs import hookimpl
from .labels import LabelSchema
from .log import set_verbosity
from .run import Run
from .strategy import Strategy
from .task import Task

__all__ = [
    "BundleError",
    "ConfigError",
    "DataError",
    "ExportError",
    "Head",
    "LabelSchema",
    "ModelNotFoundError",
    "PluginError",
    "Run",
    "Strategy",
    "Task",
    "TrainingConfig",
    "TrainingError",
    "TunekitError",
    "UnknownNameError",
    "__version__",
    "finetune",
    "get_strategy",
    "get_task",
    "hookimpl",
    "list_models",
    "list_strategies",
    "list_tasks",
    "load",
    "set_verbosity",
]
