"""Bundles: the one artifact training produces, and its verified loading.

Layout of a bundle directory::

    manifest.json        sha256 of every other file (checked by load)
    tunekit.json         task / strategy names, options and learned state, training options,
                         base model identity, library versions, metrics
    history.json         the run's history table and info
    config.json          the encoder's transformers config
    tokenizer/           the tokenizer (save_pretrained layout)
    model.safetensors    the tensors the strategy trained (the whole model for ``full``)
    signature.json       optional: HMAC-SHA256 of manifest.json (``run.save(sign_key=...)``)

A bundle is written to a temporary sibling directory and renamed into place; it replaces
only an empty directory or an earlier bundle (never a folder of the user's files).

Loading never runs code from the bundle: before transformers is asked anything, a bundle
holding Python files, a pickle, an ``auto_map`` in any JSON file or a ``model_type``
transformers does not know is refused, and every transformers call passes
``trust_remote_code=False``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import platform
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .__about__ import __version__
from .atomic import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    atomic_directory,
    check_save_target,
    leftovers,
)
from .config import config_to_dict
from .errors import BundleError, ConfigError, TunekitError
from .hardware import is_main_process as _is_main_process

if TYPE_CHECKING:
    from .run import Run

FORMAT = "tunekit-bundle"
FORMAT_VERSION = 1
MANIFEST = MANIFEST_FILE
SIGNATURE = SIGNATURE_FILE
#: suffixes of files that hold code; a bundle never does
CODE_SUFFIXES = frozenset({".py", ".pyc", ".pyo", ".pyw", ".pyx", ".so", ".pyd", ".dll", ".dylib"})
#: suffixes of pickle-based formats; a bundle's weights are safetensors only
PICKLE_SUFFIXES = frozenset(
    {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5"}
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"tunekit": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def save_bundle(
    run: Run,
    path: str | os.PathLike,
    *,
    merged: bool | None = None,
    sign_key: bytes | str | None = None,
    **options: Any,
) -> str:
    """Write *run* as a bundle at *path* (replacing an existing bundle there atomically).

    By default a bundle holds what the strategy trained (adapter / head / top layers) plus
    the base model's identity and weights hash, and loading re-attaches to that base.
    ``merged=True`` writes a standalone bundle with the whole encoder instead (an adapter is
    folded into the weights and checked to give the same outputs, or refused); ``None``
    follows the strategy's ``merge`` option where it has one.

    ``sign_key`` (bytes or text) adds ``signature.json``, an HMAC-SHA256 of the manifest, so
    ``tunekit.load(path, verify_key=...)`` can refuse bundles your team did not produce.

    *path* must be absent, an empty directory or an earlier bundle (replaced atomically);
    a directory with other files is refused with a :class:`BundleError`, nothing deleted.

    Only the main process writes when several processes train together.
    """
    from safetensors.torch import save_file

    if options:
        raise TunekitError(
            f"unknown save option(s) {sorted(options)} for strategy {run.strategy.name!r}; save takes "
            f"merged=True|False and sign_key=..."
        )
    key = _key_bytes(sign_key, "sign_key") if sign_key is not None else None
    path = Path(path)
    if not _is_main_process():
        return str(path)
    check_save_target(path)  # before merging weights: refuse a folder of the user's files
    strategy, model = run.strategy, run.model
    if merged is None:
        merged = bool(getattr(strategy.config, "merge", False))
    if merged:
        model = strategy.merged_model(run.model)
        strategy = strategy.standalone()
        state = model.state_dict()
        stores_encoder = True
    else:
        strategy.prepare_for_save(model)
        state = strategy.saved_state(model)
        stores_encoder = strategy.stores_encoder
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    with atomic_directory(path, protect=True) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        encoder = model.encoder
        base = getattr(encoder, "get_base_model", lambda: encoder)()
        base.config.save_pretrained(tmp)
        run.tokenizer.save_pretrained(tmp / "tokenizer")
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": {
                "name": run.task.name,
                "config": config_to_dict(run.task.config),
                "state": run.task.state(),
            },
            "strategy": {
                "name": strategy.name,
                "config": config_to_dict(strategy.config),
                "stores_encoder": stores_encoder,
                "merged_from": run.strategy.name if merged else None,
            },
            "training": config_to_dict(run.training),
            "precision": run.precision,
            "backbone": run.backbone,
            "versions": library_versions(),
            "metrics": run.metrics,
        }
        (tmp / "tunekit.json").write_text(
            json.dumps(meta, indent=2, ensure_ascii=False, default=_json_default)
        )
        (tmp / "history.json").write_text(
            json.dumps(
                {"rows": run.history.rows, "info": run.history.info},
                indent=2,
                default=_json_default,
            )
        )
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "files": {p.relative_to(tmp).as_posix(): _sha256(p) for p in files},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if key is not None:
            signature = {"algorithm": "hmac-sha256", "manifest": _hmac(key, tmp / MANIFEST)}
            (tmp / SIGNATURE).write_text(json.dumps(signature, indent=2))
    return str(path)


def _key_bytes(key: bytes | str, option: str) -> bytes:
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ConfigError(
            f"{option} must be non-empty bytes or text (e.g. the contents of a key file), "
            f"got {type(key).__name__}"
        )
    return bytes(key)


def _hmac(key: bytes, manifest: Path) -> str:
    return hmac.new(key, manifest.read_bytes(), hashlib.sha256).hexdigest()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def verify_bundle(
    path: str | os.PathLike, *, verify_key: bytes | str | None = None
) -> dict[str, Any]:
    """Check a bundle's manifest against its files and that nothing in it could run code;
    returns the parsed ``tunekit.json``.

    Raises :class:`BundleError` for a missing directory, a missing/unsafe/altered file or
    a file not in the manifest, a bundle written by a newer tunekit, Python files,
    pickles, an ``auto_map`` in any JSON file, a ``model_type`` transformers does not
    know, and a ``tunekit.json`` without the fields loading needs. With *verify_key*, an
    unsigned bundle or one signed with another key is refused too.
    """
    root = Path(path)
    if not root.is_dir():
        hint = ""
        kept = [p for p in leftovers(root) if p.name.endswith(".old")]
        if kept:
            hint = (
                f"; a save of it was interrupted and the previous bundle is at {kept[-1]} "
                f"(saving to {root} again puts it back first, or rename it yourself)"
            )
        raise BundleError(
            f"bundle {root} does not exist or is not a directory; pass the directory run.save() "
            f"wrote{hint}"
        )
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(
            f"{root} is not a complete tunekit bundle: {MANIFEST} is missing (a partial or foreign directory)"
        )
    manifest = _read_json(root, MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        shown = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{root} is not a tunekit bundle (format {shown!r} in {MANIFEST})")
    _check_format_version(root, MANIFEST, manifest.get("format_version", FORMAT_VERSION))
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise BundleError(
            f"bundle {root}: {MANIFEST} key 'files' must map each file name to its sha256 "
            f"(got {type(files).__name__}); the bundle is damaged: save it again with run.save()"
        )
    links = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_symlink())
    if links:  # a link could make the checks (and the loader) read a file outside the bundle
        raise BundleError(
            f"bundle {root} contains symbolic links ({', '.join(links[:5])}); a bundle holds plain "
            f"files only: copy it with the links resolved (cp -rL) or save it again with run.save()"
        )
    for name, digest in files.items():
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or not name:
            raise BundleError(
                f"bundle {root}: manifest names an unsafe path {name!r}; refusing to load it "
                f"(a bundle only names files inside itself: use a bundle saved by run.save())"
            )
        file = root / pure
        if not file.is_file():
            raise BundleError(
                f"bundle {root} is partial: {name} is missing; copy the whole bundle directory "
                f"or save it again with run.save()"
            )
        if _sha256(file) != digest:
            raise BundleError(
                f"bundle {root} was altered: {name} does not match its sha256 in {MANIFEST}; "
                f"restore the original bundle or save it again with run.save()"
            )
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    extra = sorted(present - set(files) - {MANIFEST, SIGNATURE})
    if extra:
        raise BundleError(
            f"bundle {root} has files not in its manifest: {', '.join(extra[:5])}; it was altered: "
            f"remove them or save the bundle again with run.save()"
        )
    if verify_key is not None:
        _check_signature(root, _key_bytes(verify_key, "verify_key"))
    _refuse_code(root, sorted(present))
    meta = _read_json(root, "tunekit.json")
    _check_meta(root, meta)
    return meta


def _read_json(root: Path, name: str) -> Any:
    """Parse ``root/name`` strictly; anything unreadable is a :class:`BundleError` naming it."""
    try:
        return json.loads((root / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(
            f"bundle {root} is partial: {name} is missing; save the bundle again with run.save()"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(
            f"bundle {root}: {name} is unreadable, not valid JSON ({type(exc).__name__}: {exc}); the "
            f"bundle is damaged: restore it or save it again with run.save()"
        ) from None


def _check_format_version(root: Path, name: str, version: Any) -> None:
    if isinstance(version, bool) or not isinstance(version, int):
        raise BundleError(
            f"bundle {root}: {name} key 'format_version' is {version!r}, not a whole number; the "
            f"bundle is damaged: save it again with run.save()"
        )
    if version > FORMAT_VERSION:
        raise BundleError(
            f"bundle {root} has format version {version} ({name}), newer than this tunekit "
            f"({__version__}, format {FORMAT_VERSION}) reads; upgrade tunekit"
        )


def _check_signature(root: Path, key: bytes) -> None:
    if not (root / SIGNATURE).is_file():
        raise BundleError(
            f"bundle {root} is not signed ({SIGNATURE} is missing) but a verify_key was given; "
            f"load only bundles saved with run.save(sign_key=...) by your team"
        )
    signature = _read_json(root, SIGNATURE)
    given = signature.get("manifest") if isinstance(signature, dict) else None
    if (
        not isinstance(signature, dict)
        or signature.get("algorithm") != "hmac-sha256"
        or not isinstance(given, str)
        or not hmac.compare_digest(given, _hmac(key, root / MANIFEST))
    ):
        raise BundleError(
            f"bundle {root}: {SIGNATURE} does not match verify_key (signed with another key, or "
            f"{MANIFEST} was changed after signing); refusing a bundle your key did not sign"
        )


def _looks_pickled(head: bytes) -> str | None:
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (the format torch.save writes: pickles inside)"
    return None


def _refuse_code(root: Path, names: list[str]) -> None:
    """No Python file, no pickle, no ``auto_map``, no unknown ``model_type``: nothing a
    loader could be talked into running."""
    for name in names:  # code first: the most telling reason to refuse
        if PurePosixPath(name).suffix.lower() in CODE_SUFFIXES:
            raise BundleError(
                f"bundle {root} contains code ({name}); tunekit never runs code from a bundle and "
                f"refuses one that ships it. Load only bundles saved by run.save(); if this one is "
                f"yours, delete the file and save it again"
            )
    for name in names:
        suffix = PurePosixPath(name).suffix.lower()
        with (root / name).open("rb") as fh:
            kind = _looks_pickled(fh.read(4))
        if suffix in PICKLE_SUFFIXES or kind:
            raise BundleError(
                f"bundle {root}: {name} is {kind or 'a pickle-based file'}; unpickling can run "
                f"code, so a bundle holds safetensors and JSON only. Save the bundle again with "
                f"run.save()"
            )
        if suffix == ".json":
            found = _find_key(_read_json(root, name), "auto_map")
            if found:
                raise BundleError(
                    f"bundle {root}: {name} has key {found!r}, which asks transformers to import "
                    f"model code shipped with the bundle; tunekit never runs such code. Load only "
                    f"bundles saved by run.save(); if this one is yours, remove the key and save "
                    f"again"
                )
    config = _read_json(root, "config.json")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str) or not model_type:
        raise BundleError(
            f"bundle {root}: config.json has no key 'model_type' (got {model_type!r}); transformers "
            f"cannot tell which model it describes. Save the bundle again with run.save()"
        )
    from transformers import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        raise BundleError(
            f"bundle {root}: config.json key 'model_type' is {model_type!r}, which transformers does "
            f"not know; a custom model type needs custom code, which tunekit never runs. Use a model "
            f"type transformers ships (bert, roberta, ernie...)"
        )


def _find_key(data: Any, key: str) -> str | None:
    """Dotted path of the first *key* anywhere in JSON *data* (walked without recursion)."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                here = f"{where}.{k}" if where else str(k)
                if k == key:
                    return here
                if isinstance(v, (dict, list)):
                    stack.append((v, here))
        elif isinstance(node, list):
            stack.extend(
                (v, f"{where}[{i}]") for i, v in enumerate(node) if isinstance(v, (dict, list))
            )
    return None


def _check_meta(root: Path, meta: Any) -> None:
    """``tunekit.json`` holds the fields loading reads, with the right types."""

    def bad(key: str, what: str) -> BundleError:
        return BundleError(
            f"bundle {root}: tunekit.json key {key!r} {what}; the bundle is damaged or was edited: "
            f"save it again with run.save()"
        )

    if not isinstance(meta, dict):
        raise bad("(top level)", f"must be an object, got {type(meta).__name__}")
    _check_format_version(root, "tunekit.json", meta.get("format_version", FORMAT_VERSION))
    for key in ("task", "strategy", "training", "backbone"):
        if key not in meta:
            raise bad(key, "is missing")
        if not isinstance(meta[key], dict):
            raise bad(key, f"must be an object, got {type(meta[key]).__name__}")
    for part in ("task", "strategy"):
        if not isinstance(meta[part].get("name"), str):
            raise bad(f"{part}.name", "is missing or not text")
        if not isinstance(meta[part].get("config", {}), dict):
            raise bad(f"{part}.config", "must be an object")
    if not isinstance(meta["task"].get("state", {}), (dict, type(None))):
        raise bad("task.state", "must be an object")
    if not isinstance(meta["strategy"].get("stores_encoder"), bool):
        raise bad("strategy.stores_encoder", "is missing or not true/false")
    for key in ("name", "source"):
        if not isinstance(meta["backbone"].get(key, ""), (str, type(None))):
            raise bad(f"backbone.{key}", "must be text")


def find_bundle(path: str | os.PathLike) -> Path | None:
    """The bundle directory at *path*: *path* itself when it holds a bundle manifest, or its
    ``bundle/`` when *path* is a ``finetune(output_dir=...)`` directory; else ``None``."""
    root = Path(path).expanduser()
    if (root / MANIFEST).is_file():
        return root
    if (root / "bundle" / MANIFEST).is_file() and not (root / "config.json").is_file():
        return root / "bundle"
    return None
