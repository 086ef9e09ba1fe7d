"""Errors raised by tunekit.

Every error a user can cause is a :class:`TunekitError` subclass whose message says
what was wrong, where (file, record, column, option) and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TunekitError(Exception):
    """Base class of every error tunekit raises on purpose."""


class ConfigError(TunekitError, ValueError):
    """An option has a wrong name, type or value."""


class UnknownNameError(ConfigError, KeyError):
    """A task, strategy, head or model name that nothing registered.

    The message lists close matches, e.g. ``unknown task 'clasify'; did you mean 'classify'?``.
    """

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        known = sorted(set(known))
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        if known:
            plural = f"{kind[:-1]}ies" if kind.endswith("y") else f"{kind}s"
            msg += f" Known {plural}: {', '.join(known)}."
        if hint:
            msg += f" {hint}"
        super().__init__(msg)
        self.kind, self.name, self.known, self.close_matches = kind, name, known, close

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


class PluginError(TunekitError):
    """A plugin is broken or two plugins claim the same name."""


class DataError(TunekitError, ValueError):
    """Training or evaluation data cannot be used as given."""


class ModelNotFoundError(TunekitError):
    """A backbone model cannot be found locally and the hub cannot be reached."""


class BundleError(TunekitError):
    """A saved bundle is missing, partial, altered or incompatible."""


class TrainingError(TunekitError):
    """Training cannot go on (e.g. the loss became NaN)."""


class CheckpointError(TrainingError):
    """A checkpoint cannot be resumed from: a file of it is unreadable or missing, or it
    was written by another tunekit format. The message names the file and the checkpoint
    to delete."""


class ResumeMismatchError(ConfigError):
    """``resume=True`` found a checkpoint of another run: the message lists each differing
    field of the run's fingerprint as ``old → new``."""


class ExportError(TunekitError):
    """A run cannot be exported to the asked format (e.g. its head has no exact
    transformers equivalent); the message says which options would make it exportable."""


def close_matches_hint(name: str, known: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for *name* among *known*, or ``""``."""
    close = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
