"""tunekit-ordinal: an example third-party tunekit plugin (ordinal regression).

Example::

    import tunekit
    run = tunekit.finetune(task="ordinal", data=[{"text": "superb", "label": 5}, ...])
    run.predict("a decent film")   # {'label': 4, 'expected': 3.8, 'probabilities': {...}}
"""

from .task import OrdinalConfig, OrdinalTask

__all__ = ["OrdinalConfig", "OrdinalTask"]
