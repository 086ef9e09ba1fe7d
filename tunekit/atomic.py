"""Atomic directory writes: build in a temporary sibling, fsync, rename into place.

A crash at any point leaves either the previous directory or the new one, never a half
written one; temporary siblings start with ``.`` and end with ``.partial`` so nothing
picks them up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError, TunekitError


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())
        with contextlib.suppress(OSError):
            fd = os.open(root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def check_writable_directory(path: str | os.PathLike, *, option: str = "output_dir") -> None:
    """Fail early, before any work, unless *path* is a directory this process can write or
    one it can create; nothing is left behind by the check.

    Raises :class:`~tunekit.errors.ConfigError` naming *option* and the path.

    Example::

        check_writable_directory("out/run1")   # passes: "out" will be created
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{option} {target} is a file; pass a directory path")
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(
            f"{option} {target} cannot be created: {probe} is a file; pass another directory path"
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tunekit-write-check-", dir=probe))
    except OSError as exc:
        raise ConfigError(
            f"{option} {target} is not writable ({exc.strerror or exc} in {probe}); "
            f"choose a writable directory or fix its permissions"
        ) from None


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``), so a
    crash never leaves *b* missing; ``False`` where the system cannot, and the caller falls
    back to two renames (a crash between them leaves the previous directory as a
    ``.old`` sibling)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return done == 0


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that replaces *target* atomically when the block ends.

    Example::

        with atomic_directory("out/model") as tmp:
            (tmp / "weights.safetensors").write_bytes(...)
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise TunekitError(f"output path {target} exists and is a file; choose a directory path")
    if target.exists() and not overwrite:
        raise TunekitError(
            f"output directory {target} already exists; pass overwrite=True or another path"
        )
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{target.name}.{uuid.uuid4().hex[:8]}.partial"
        tmp.mkdir()
    except PermissionError as exc:
        raise TunekitError(
            f"cannot write to {parent}: permission denied; choose a writable output directory"
        ) from exc
    except OSError as exc:
        raise TunekitError(f"cannot create output directory next to {target}: {exc}") from exc
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            if _exchange(tmp, target):  # tmp now holds the previous directory
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                old = parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        with contextlib.suppress(OSError):
            fd = os.open(parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
