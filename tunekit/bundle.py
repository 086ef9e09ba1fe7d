"""Bundles: the one artifact training produces, and its verified loading.

Layout of a bundle directory::

    manifest.json        sha256 of every other file (checked by load)
    tunekit.json         task / strategy names, options and learned state, training options,
                         base model identity, library versions, metrics
    history.json         the run's history table and info
    config.json          the encoder's transformers config
    tokenizer/           the tokenizer (save_pretrained layout)
    model.safetensors    the tensors the strategy trained (the whole model for ``full``)

A bundle is written to a temporary sibling directory and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .__about__ import __version__
from .atomic import atomic_directory
from .config import TrainingConfig, build_config, config_to_dict
from .errors import BundleError, TunekitError
from .history import History
from .models import Backbone, load_backbone
from .taskmodel import TaskModel

if TYPE_CHECKING:
    from .run import Run

FORMAT = "tunekit-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


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
    run: Run, path: str | os.PathLike, *, merged: bool | None = None, **options: Any
) -> str:
    """Write *run* as a bundle at *path* (replacing an existing bundle there atomically).

    By default a bundle holds what the strategy trained (adapter / head / top layers) plus
    the base model's identity and weights hash, and loading re-attaches to that base.
    ``merged=True`` writes a standalone bundle with the whole encoder instead (an adapter is
    folded into the weights and checked to give the same outputs, or refused); ``None``
    follows the strategy's ``merge`` option where it has one.

    Only the main process writes when several processes train together.
    """
    from safetensors.torch import save_file

    if options:
        raise TunekitError(
            f"unknown save option(s) {sorted(options)} for strategy {run.strategy.name!r}; save takes merged=True|False"
        )
    path = Path(path)
    if not _is_main_process():
        return str(path)
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
    with atomic_directory(path) as tmp:
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
    return str(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def _is_main_process() -> bool:
    try:
        from accelerate.state import PartialState

        return PartialState().is_main_process
    except Exception:
        return True


def verify_bundle(path: str | os.PathLike) -> dict[str, Any]:
    """Check a bundle's manifest against its files; returns the parsed ``tunekit.json``.

    Raises :class:`BundleError` for a missing directory, a missing/unsafe/altered file or
    a file not in the manifest, and for a bundle written by a newer tunekit.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(
            f"bundle {root} does not exist or is not a directory; pass the directory run.save() wrote"
        )
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(
            f"{root} is not a complete tunekit bundle: {MANIFEST} is missing (a partial or foreign directory)"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, str] = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BundleError(
            f"bundle {root}: {MANIFEST} is unreadable ({exc}); the bundle is damaged"
        ) from exc
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{root} is not a tunekit bundle (format {manifest.get('format')!r})")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise BundleError(
            f"bundle {root} has format version {manifest['format_version']}, newer than this tunekit "
            f"({__version__}, format {FORMAT_VERSION}) reads; upgrade tunekit"
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
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {MANIFEST}
    extra = sorted(present - set(files))
    if extra:
        raise BundleError(
            f"bundle {root} has files not in its manifest: {', '.join(extra[:5])}; it was altered: "
            f"remove them or save the bundle again with run.save()"
        )
    meta = json.loads((root / "tunekit.json").read_text())
    return meta


def find_bundle(path: str | os.PathLike) -> Path | None:
    """The bundle directory at *path*: *path* itself when it holds a bundle manifest, or its
    ``bundle/`` when *path* is a ``finetune(output_dir=...)`` directory; else ``None``."""
    root = Path(path).expanduser()
    if (root / MANIFEST).is_file():
        return root
    if (root / "bundle" / MANIFEST).is_file() and not (root / "config.json").is_file():
        return root / "bundle"
    return None


def bundle_backbone(path: str | os.PathLike, *, name: str | None = None) -> Backbone:
    """The encoder of a saved bundle (adapters merged in) with its tokenizer, as a
    :class:`Backbone`, so that a bundle can be the ``model=`` of another task: e.g. a
    ``fill-mask`` domain-adapted encoder fine-tuned for ``classify``. The bundle's head is
    dropped.

    Example::

        tunekit.finetune(task="classify", model="out/mlm-adapted", data="reviews.csv")
    """
    run = load_bundle(path, device="cpu")
    encoder = run.strategy.merged_model(run.model).encoder
    encoder.eval()
    return Backbone(
        name=name or str(path), source=str(path), model=encoder, tokenizer=run.tokenizer
    )


def load_bundle(path: str | os.PathLike, *, device: str | None = None) -> Run:
    """Load and verify a bundle written by :func:`save_bundle`."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from .plugins import get_state
    from .run import Run

    root = Path(path)
    meta = verify_bundle(root)
    state = get_state()
    try:
        task_cls = state.tasks.get(meta["task"]["name"])
        strategy_cls = state.strategies.get(meta["strategy"]["name"])
    except TunekitError as exc:
        raise BundleError(
            f"bundle {root} needs a plugin that is not installed: {exc} Install the plugin that "
            f"provides it (`tunekit plugins` lists what is installed)."
        ) from exc
    task = task_cls(
        build_config(task_cls.Config, meta["task"]["config"], owner=f"task {task_cls.name!r}")
    )
    task.load_state(meta["task"]["state"])
    strategy = strategy_cls(
        build_config(
            strategy_cls.Config, meta["strategy"]["config"], owner=f"strategy {strategy_cls.name!r}"
        )
    )
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    identity = meta["backbone"]
    if meta["strategy"]["stores_encoder"]:
        config = AutoConfig.from_pretrained(root)
        encoder = AutoModel.from_config(config)
        backbone = Backbone(
            name=identity.get("name", ""), source=str(root), model=encoder, tokenizer=tokenizer
        )
    else:
        try:
            backbone = load_backbone(identity.get("name") or identity.get("source"))
        except TunekitError as exc:
            raise BundleError(
                f"bundle {root} re-attaches to base model {identity.get('name')!r}, which cannot be loaded: {exc}"
            ) from exc
        if identity.get("weights_sha256") and backbone.weights_sha256 != identity["weights_sha256"]:
            raise BundleError(
                f"bundle {root} was trained on base model {identity.get('name')!r} with weights sha256 "
                f"{identity['weights_sha256'][:12]}…, but {backbone.source} has {backbone.weights_sha256[:12]}…; "
                f"load it where the same base model is available, or save it with a strategy that stores the encoder"
            )
        backbone = Backbone(
            name=backbone.name, source=backbone.source, model=backbone.model, tokenizer=tokenizer
        )
    head = task.build_head(backbone)
    model = TaskModel(backbone.model, head)
    strategy.apply(model)
    tensors = load_file(str(root / "model.safetensors"))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    allowed_missing = (
        set()
        if meta["strategy"]["stores_encoder"]
        else {k for k in model.state_dict() if k.startswith("encoder.")}
    )
    bad_missing = [k for k in missing if k not in allowed_missing]
    if unexpected or bad_missing:
        raise BundleError(
            f"bundle {root} does not fit the model rebuilt from it (missing {bad_missing[:3]}, unexpected "
            f"{list(unexpected)[:3]}); it was written by an incompatible tunekit or plugin version"
        )
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(target).eval()
    training = build_config(TrainingConfig, {**meta["training"], "resume": False}, owner="training")
    history_data = json.loads((root / "history.json").read_text())
    precision = meta.get("precision", "fp32")
    if precision == "fp16" and target.type == "cpu":
        precision = "fp32"
    run_cls = getattr(task, "run_class", None) or Run
    return run_cls(
        task=task,
        strategy=strategy,
        model=model,
        tokenizer=tokenizer,
        training=training,
        backbone=identity,
        history=History(history_data.get("rows"), info=history_data.get("info")),
        metrics=meta.get("metrics"),
        precision=precision,
    )
