"""``finetune(task="pair-sim", model="ernie-gram")`` exactly as written, offline.

The checkpoint ``nghuyong/ernie-gram-zh`` says ``model_type: bert``, has an 18,018-entry
vocabulary and ships only a pickled ``pytorch_model.bin``. A tiny random model with that
layout is placed in an HF cache under a temporary ``HF_HOME`` (read when huggingface_hub
is imported, hence a subprocess) with ``HF_HUB_OFFLINE=1``.
"""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    import tunekit
    from tunekit.errors import ModelNotFoundError

    logging.getLogger("tunekit").setLevel(logging.ERROR)
    data, expect = sys.argv[1], sys.argv[2]
    try:
        run = tunekit.finetune(task="pair-sim", model="ernie-gram", data=data)
    except ModelNotFoundError as exc:
        print(json.dumps({"error": str(exc)}))
    else:
        print(json.dumps({
            "encoder": type(run.model.encoder).__name__,
            "vocab": len(run.tokenizer),
            "tokens": run.tokenizer.tokenize("今天天气如何"),
            "losses": [float(v) for v in run.history.column("train_loss")],
            "prediction": run.predict(("今天天气怎么样", "今天天气如何")),
        }))
    """
)
ZH = [
    ("今天天气怎么样", "今天天气如何", 1),
    ("今天天气怎么样", "我想买一本书", 0),
    ("你今年多大了", "你的年龄是多少", 1),
    ("你今年多大了", "火车站在哪里", 0),
    ("我喜欢喝绿茶", "绿茶是我喜欢的", 1),
    ("我喜欢喝绿茶", "股市今天下跌了", 0),
]
VOCAB_SIZE = 18018
REVISION = "0123456789abcdef0123456789abcdef01234567"


def fake_ernie_gram_cache(hf_home):
    """An HF hub cache holding a tiny model laid out like nghuyong/ernie-gram-zh."""
    import torch
    from transformers import BertConfig, BertModel

    repo = hf_home / "hub" / "models--nghuyong--ernie-gram-zh"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    vocab = (
        ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    vocab += sorted({c for a, b, _ in ZH for c in a + b})
    vocab += [f"##{i}" for i in range(VOCAB_SIZE - len(vocab))]
    (snapshot / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = {  # the checkpoint's keys, tiny sizes
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 32,
        "initializer_range": 0.02,
        "max_position_embeddings": 512,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "intermediate_size": 64,
        "type_vocab_size": 2,
        "vocab_size": VOCAB_SIZE,
        "layer_norm_eps": 1e-12,
        "model_type": "bert",
    }
    (snapshot / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    torch.save(BertModel(BertConfig(**config)).state_dict(), snapshot / "pytorch_model.bin")


def run_script(tmp_path, hf_home):
    data = tmp_path / "train.tsv"  # LCQMC layout: headerless text_a \t text_b \t label
    data.write_text("".join(f"{a}\t{b}\t{y}\n" for a, b, y in ZH * 4), encoding="utf-8")
    env = {
        **os.environ,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("HF_HUB_CACHE", None)
    env.pop("TRANSFORMERS_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data), "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_ernie_gram_alias_trains_from_the_hf_cache_offline(tmp_path):
    hf_home = tmp_path / "hf"
    fake_ernie_gram_cache(hf_home)
    assert not list(hf_home.rglob("*.safetensors"))  # only the pickled weights, loaded weights_only
    out = run_script(tmp_path, hf_home)
    assert out["encoder"] == "BertModel" and out["vocab"] == VOCAB_SIZE
    assert out["tokens"] == list("今天天气如何")
    assert len(out["losses"]) == 3 and out["losses"][-1] < out["losses"][0]
    assert out["prediction"]["label"] in ("0", "1") and 0 <= out["prediction"]["probability"] <= 1


def test_ernie_gram_missing_is_an_actionable_error(tmp_path):
    out = run_script(tmp_path, tmp_path / "empty-hf")
    message = out["error"]
    assert "'ernie-gram'" in message and "nghuyong/ernie-gram-zh" in message
    assert "HF_HUB_OFFLINE" in message and "model='/path/to/model'" in message
