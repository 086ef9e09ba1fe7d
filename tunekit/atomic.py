"""Atomic directory writes: build in a temporary sibling, fsync, rename into place.

A crash at any point leaves either the previous directory or the new one, never a half
written one; temporary siblings start with ``.`` and end with ``.partial`` so nothing
picks them up, and the next save of the same target removes what a killed save left.

Saving never deletes what tunekit did not write: a user-facing target (``run.save``,
``--output``, exports) is replaced only when it is absent, empty, or holds exactly the
files a tunekit bundle or export recorded (:func:`check_save_target`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import BundleError, ConfigError, TunekitError

#: files that record what tunekit wrote into a directory (a bundle's manifest, an export's info)
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "signature.json"
EXPORT_RECORD = "tunekit_export.json"


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


def list_files(path: str | os.PathLike) -> list[str]:
    """Every file (and link) under *path*, as sorted POSIX paths relative to it."""
    root = Path(path)
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()
    )


def _recorded_files(target: Path) -> set[str] | None:
    """The files tunekit recorded writing into *target* (bundle manifest or export record),
    or ``None`` when *target* holds no such record."""
    for record in (MANIFEST_FILE, EXPORT_RECORD):
        path = target / record
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict):
            continue
        files = data.get("files")
        if record == MANIFEST_FILE and data.get("format") == "tunekit-bundle":
            if isinstance(files, dict):
                return {str(f) for f in files} | {MANIFEST_FILE, SIGNATURE_FILE}
        elif record == EXPORT_RECORD and isinstance(files, list):
            return {str(f) for f in files} | {EXPORT_RECORD}
    return None


def check_save_target(path: str | os.PathLike, *, option: str = "path") -> None:
    """Refuse, before any work, a save target tunekit must not replace; *option* names the
    argument or flag in the message.

    A target may be absent (it is created), an empty directory, or a directory holding
    only what an earlier tunekit save or export recorded writing there (then it is
    replaced atomically). Anything else is a :class:`~tunekit.errors.BundleError` naming
    the directory, the first foreign files and what to do: a user's ``notes.md`` is never
    deleted. The current directory, a directory above it and a mount point are refused
    too: a save replaces its target by renaming, which they cannot take.

    Example::

        check_save_target("out/sentiment", option="--output")
    """
    target = Path(os.path.abspath(path))
    shown = os.fspath(path)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ConfigError(
            f"{option} {shown} is a file or a link, not a directory; pass a directory path"
        )
    if not target.exists():
        check_writable_directory(target, option=option)
        return
    cwd = Path(os.path.abspath(os.getcwd()))
    if target == cwd or target in cwd.parents:
        raise BundleError(
            f"{option} {shown} is the current directory (or one above it): a save replaces its "
            f"target directory as a whole, which cannot be done to the directory you are in; pass "
            f"a new subdirectory such as {option} {os.path.join(shown, 'bundle')}"
        )
    if os.path.ismount(target):
        raise BundleError(
            f"{option} {shown} is a mount point: a save replaces its target directory by renaming, "
            f"which a mount point cannot take; pass a new subdirectory of it"
        )
    present = list_files(target)
    if not present:
        check_writable_directory(target, option=option)
        return
    recorded = _recorded_files(target)
    foreign = present if recorded is None else [f for f in present if f not in recorded]
    if foreign:
        listed = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        what = (
            "is not a tunekit bundle or export"
            if recorded is None
            else "holds files the tunekit save there did not write"
        )
        raise BundleError(
            f"{option} {shown} {what} ({listed}); a save replaces its directory as a whole and "
            f"would delete them. Pass a new or empty directory, or move those files out first"
        )
    check_writable_directory(target, option=option)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``), so a
    crash never leaves *b* missing; ``False`` where the system cannot, and the caller falls
    back to two renames (undone if the second fails; a kill between them leaves the previous
    directory as a ``.old`` sibling that the next save or load puts back)."""
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


def _sibling_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(target.name)}\.(?:(\d+)-)?[0-9a-f]{{8}}\.(partial|old)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def leftovers(target: str | os.PathLike) -> list[Path]:
    """``.partial`` / ``.old`` siblings of *target* that a killed save left (not those of a
    save still running in another process on this machine)."""
    target = Path(os.path.abspath(target))
    pattern = _sibling_pattern(target)
    found = []
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            match = pattern.match(entry.name)
            if match and entry.is_dir() and not entry.is_symlink():
                pid = int(match.group(1)) if match.group(1) else None
                if pid is not None and pid != os.getpid() and _alive(pid):
                    continue
                found.append(entry)
    return sorted(found, key=lambda p: p.stat().st_mtime)


def recover(target: str | os.PathLike) -> None:
    """Clean up after a killed save of *target*: put back the previous directory when the
    kill landed between the two renames of the fallback path (target missing, a ``.old``
    sibling present), and remove the other ``.partial`` / ``.old`` siblings."""
    target = Path(os.path.abspath(target))
    stale = leftovers(target)
    olds = [p for p in stale if p.name.endswith(".old")]
    if olds and not target.exists():
        os.replace(olds[-1], target)  # the newest previous version
        stale.remove(olds[-1])
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(
    target: str | os.PathLike, *, overwrite: bool = True, protect: bool = False
) -> Iterator[Path]:
    """Yield a temporary directory that replaces *target* atomically when the block ends.

    ``protect=True`` (every user-facing save) first runs :func:`check_save_target`, so
    a directory tunekit did not write is refused instead of replaced. Leftovers of an
    earlier killed save of *target* are cleaned up first.

    Example::

        with atomic_directory("out/model", protect=True) as tmp:
            (tmp / "weights.safetensors").write_bytes(...)
    """
    shown = target
    target = Path(os.path.abspath(target))
    if target.exists() and not target.is_dir():
        raise TunekitError(f"output path {shown} exists and is a file; choose a directory path")
    if protect:
        check_save_target(shown)
    if target.exists() and not overwrite:
        raise TunekitError(
            f"output directory {shown} already exists; pass overwrite=True or another path"
        )
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        recover(target)
        tmp = parent / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
        tmp.mkdir()
    except PermissionError as exc:
        raise TunekitError(
            f"cannot write to {parent}: permission denied; choose a writable output directory"
        ) from exc
    except OSError as exc:
        raise TunekitError(f"cannot create output directory next to {shown}: {exc}") from exc
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            if _exchange(tmp, target):  # tmp now holds the previous directory
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                old = parent / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.old"
                os.replace(target, old)
                try:
                    os.replace(tmp, target)
                except BaseException as exc:
                    os.replace(old, target)  # never leave the target missing
                    if isinstance(exc, OSError):
                        raise TunekitError(
                            f"cannot move the new {shown} into place ({exc}); the previous "
                            f"directory was kept unchanged. Check the disk and save again"
                        ) from exc
                    raise
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
