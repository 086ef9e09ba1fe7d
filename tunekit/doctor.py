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
    stopped plugin loading altogether (a name clash), else ``None``.
    """

    versions: dict[str, str]
    device: str
    plugins: tuple[PluginRecord, ...]
    error: str | None = None

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
    return Diagnosis(
        versions=library_versions(), device=describe_device(), plugins=records, error=error
    )


def format_diagnosis(diagnosis: Diagnosis) -> str:
    """The report ``tunekit doctor`` prints."""
    lines = [f"{name:<14}{value}" for name, value in diagnosis.versions.items()]
    lines += [f"{'device':<14}{diagnosis.device}", "", "plugins:"]
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
    lines.append(
        f"{len(failures)} problem(s) found" if failures else "everything loaded: no problem found"
    )
    return "\n".join(lines)
