"""The ``tunekit`` logger and how loud it is.

Every tunekit module (and the first-party plugins) logs to ``logging.getLogger("tunekit")``.
By default tunekit is quiet: the logger keeps Python's default level, so only warnings and
errors show (through the application's handlers, or Python's last-resort handler on
stderr). ``finetune(..., verbose=True)`` (CLI ``--verbose``), :func:`set_verbosity` or the
``TUNEKIT_VERBOSITY`` environment variable turn on progress messages (trainable
parameters, early stopping, resume...).

The libraries tunekit drives (transformers, peft, accelerate, datasets) are quietened inside
tunekit's own calls only (:func:`quiet_libraries`): their deprecation warnings about how
*we* call them, info messages and progress bars are for tunekit's developers, not its users.
``verbose="debug"`` shows them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

from .errors import ConfigError

logger = logging.getLogger("tunekit")

#: ``verbose=`` values → logging levels
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
ENV_VAR = "TUNEKIT_VERBOSITY"
_handler: logging.Handler | None = None


def level_of(verbose: bool | str | None) -> int | None:
    """The logging level *verbose* asks for: ``True`` → INFO, ``False`` → WARNING, a level
    name (``"debug"``, ``"info"``, ``"warning"``, ``"error"``) → that level; ``None`` → the
    ``TUNEKIT_VERBOSITY`` environment variable's, or ``None`` (leave logging as it is)."""
    if verbose is None:
        verbose = os.environ.get(ENV_VAR) or None
        if verbose is None:
            return None
        where = f"environment variable {ENV_VAR}"
    else:
        where = "option verbose"
    if isinstance(verbose, bool):
        return logging.INFO if verbose else logging.WARNING
    if isinstance(verbose, str) and verbose.lower() in LEVELS:
        return LEVELS[verbose.lower()]
    raise ConfigError(
        f"{where}={verbose!r} is not a verbosity; use True, False or one of {', '.join(LEVELS)}"
    )


def set_verbosity(verbose: bool | str | None) -> None:
    """Set how much the ``tunekit`` logger shows (see :func:`level_of`); stays for the process.

    When nothing would print the messages (no handler on the ``tunekit`` logger or the root
    logger), a stderr handler is added to the ``tunekit`` logger; an application that
    configures logging itself keeps its own handlers and format.

    Example::

        tunekit.set_verbosity("info")   # or finetune(..., verbose=True)
    """
    global _handler
    level = level_of(verbose)
    if level is None:
        return
    logger.setLevel(level)
    if level < logging.WARNING and _handler is None and not _has_handler():
        _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(logging.Formatter("tunekit: %(levelname)s: %(message)s"))
        logger.addHandler(_handler)


def _has_handler() -> bool:
    current: logging.Logger | None = logger
    while current is not None:
        if current.handlers:
            return True
        current = current.parent if current.propagate else None
    return False


#: modules whose warnings tunekit's calls silence (the warning's origin, as ``warnings`` sees it)
LIBRARY_MODULES = r"(transformers|peft|accelerate|datasets|huggingface_hub|torch|sklearn)(\.|$)"


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence the libraries tunekit drives for the duration of one tunekit call: their
    ``FutureWarning`` / ``DeprecationWarning`` / ``UserWarning``, transformers' logging
    below errors and its progress bars ("Writing model shards"...). Everything is restored
    on exit, so the application's own warnings and logging settings stay as they were; with
    the tunekit logger at DEBUG (``verbose="debug"``) nothing is silenced.

    Example::

        with quiet_libraries():
            model = AutoModel.from_pretrained(path)
    """
    if logger.getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    peft_logger = logging.getLogger("peft")
    peft_level = peft_logger.level
    peft_logger.setLevel(max(peft_level, logging.ERROR))
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning, UserWarning):
                warnings.filterwarnings("ignore", category=category, module=LIBRARY_MODULES)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        peft_logger.setLevel(peft_level)
