"""``run.export(dir, format="hf")`` and ``tunekit export``: the written directory loads in
``transformers.pipeline`` and predicts what the run predicts (same labels, probabilities
equal to float precision); heads with no exact transformers equivalent are refused."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import tunekit
from tunekit.errors import ConfigError, ExportError
from tunekit.testing import make_tiny_model

GOOD = ["good", "great", "fine", "superb", "lovely"]
BAD = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "film", "was", "plot", "cast"]
SPORTS, POLITICS = ["goal", "match", "team"], ["vote", "senate", "party"]
#: fp32: the exported model is fp32 and must predict what the run predicts to float precision
#: (precision="auto" would be bf16 autocast on a CPU with AMX / AVX512-BF16)
FAST = dict(
    max_length=16, batch_size=8, learning_rate=3e-3, warmup_ratio=0.0, progress=False,
    precision="fp32",
)  # fmt: skip
#: the head whose layout is transformers' pooler + classifier (hidden size of the tiny model)
EXPORTABLE = dict(head="mlp", hidden=[32], activation="tanh", pooling="cls")
TEXTS = ["good great film", "awful dull plot", "the cast was lovely", "boring poor film", "fine"]
TOLERANCE = 1e-5


def rows(n=40, seed=0):
    rng = random.Random(seed)
    return [
        {
            "text": " ".join(rng.sample(GOOD if i % 2 else BAD, 2) + rng.sample(FILLER, 2)),
            "label": "pos" if i % 2 else "neg",
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    words = " ".join(GOOD + BAD + FILLER + SPORTS + POLITICS)
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "bert", [words])


def report(task, diff):
    print(f"parity {task}: max abs diff {diff:.3e}")  # pytest -s shows the figures


def pipeline_probabilities(path, texts, **options):
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(path), top_k=None, **options)
    return [{d["label"]: d["score"] for d in out} for out in pipe(texts)]


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_single_label_pipeline_gives_the_same_predictions(tiny, tmp_path, strategy):
    options = {**FAST, **EXPORTABLE, "learning_rate": 3e-2 if strategy == "lora" else 3e-3}
    run = tunekit.finetune(
        "classify", data=rows(), model=tiny, strategy=strategy, epochs=8, **options
    )
    ours = run.predict(TEXTS)
    assert {p["label"] for p in ours} == {"pos", "neg"}  # the comparison below means something
    path = run.export(tmp_path / "hf")
    theirs = pipeline_probabilities(path, TEXTS)
    diff = max(abs(o["probabilities"][k] - t[k]) for o, t in zip(ours, theirs) for k in t)
    report(f"classify/{strategy}", diff)
    assert [o["label"] for o in ours] == [max(t, key=t.get) for t in theirs]
    assert diff < TOLERANCE
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {
        "neg": 0,
        "pos": 1,
    }
    assert config["architectures"] == ["BertForSequenceClassification"]
    info = json.loads((tmp_path / "hf" / "tunekit_export.json").read_text())
    assert info["pipeline"] == "text-classification" and info["strategy"] == strategy
    assert "pipeline_tag: text-classification" in (tmp_path / "hf" / "README.md").read_text()
    assert not list((tmp_path / "hf").glob("adapter_*"))  # the LoRA adapter is merged


def test_multi_label_and_regression(tiny, tmp_path):
    rng = random.Random(1)
    multi = []
    for i in range(36):
        labels = [["sports"], ["politics"], ["sports", "politics"]][i % 3]
        words = (SPORTS if "sports" in labels else []) + (POLITICS if "politics" in labels else [])
        multi.append(
            {"text": " ".join(rng.sample(words, 2) + rng.sample(FILLER, 2)), "label": labels}
        )
    run = tunekit.finetune("classify", data=multi, model=tiny, epochs=6, **FAST, **EXPORTABLE)
    texts = ["goal team the film", "vote senate plot", "match party cast"]
    ours = run.predict(texts)
    theirs = pipeline_probabilities(run.export(tmp_path / "multi"), texts)
    diff = max(abs(o["probabilities"][k] - t[k]) for o, t in zip(ours, theirs) for k in t)
    report("classify/multi-label", diff)
    assert diff < TOLERANCE
    assert [sorted(o["label"]) for o in ours] == [
        sorted(k for k, p in t.items() if p >= 0.5) for t in theirs
    ]

    scores = [{"text": r["text"], "label": 1.5 + 3.0 * (r["label"] == "pos")} for r in rows()]
    run = tunekit.finetune("classify", data=scores, model=tiny, epochs=4, **FAST, **EXPORTABLE)
    path = run.export(tmp_path / "reg")
    info = json.loads((tmp_path / "reg" / "tunekit_export.json").read_text())
    assert info["pipeline_options"] == {"function_to_apply": "none"}
    theirs = pipeline_probabilities(path, TEXTS, **info["pipeline_options"])
    ours = [p["score"] for p in run.predict(TEXTS)]
    diff = max(abs(o - t["score"]) for o, t in zip(ours, theirs))
    report("classify/regression (score, range 1.5-4.5)", diff)
    assert diff < 1e-4 and max(ours) - min(ours) > 0.5  # the label range, not the 0-1 target


def test_heads_without_an_exact_equivalent_are_refused(tiny, tmp_path):
    base = dict(data=rows(16), model=tiny, epochs=1, **FAST)
    run = tunekit.finetune("classify", **base)  # default: linear head on mean pooling
    with pytest.raises(ExportError, match=r"pools tokens by 'mean'.*head='mlp', hidden=\[32\]"):
        run.export(tmp_path / "a")
    run = tunekit.finetune("classify", head="linear", pooling="cls", **base)
    with pytest.raises(ExportError, match=r"32 → 2 with activation\(s\) none.*hidden=\[32\]"):
        run.export(tmp_path / "b")
    run = tunekit.finetune(
        "classify", head="mlp", hidden=[16], activation="tanh", pooling="cls", **base
    )
    with pytest.raises(ExportError, match="32 → 16 → 2"):
        run.export(tmp_path / "c")
    run = tunekit.finetune("classify", strategy="layer-mix", **EXPORTABLE, **base)
    with pytest.raises(ExportError, match="learned mix of the encoder's layers"):
        run.export(tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd")  # nothing half-written
    with pytest.raises(ConfigError, match="format='hf5'.*did you mean 'hf'"):
        run.export(tmp_path / "e", format="hf5")


def test_onnx_without_onnxruntime_says_what_to_install(tiny, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name.startswith("onnxruntime"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    run = tunekit.finetune("classify", data=rows(16), model=tiny, epochs=1, **FAST, **EXPORTABLE)
    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(ExportError, match=r"pip install 'tunekit\[onnx\]'"):
        run.export(tmp_path / "onnx", format="onnx")
    assert not (tmp_path / "onnx").exists()


def test_a_task_without_export_hf_refuses(tmp_path):
    class Plain(tunekit.Task):
        name = "plain"

    run = tunekit.Run(
        task=Plain(), strategy=None, model=None, tokenizer=None, training=None, backbone={}
    )
    with pytest.raises(ExportError, match="task 'plain' cannot be exported.*Task.export_hf"):
        run.export(tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_cli_exports_a_bundle(tiny, tmp_path, capsys):
    from tunekit.cli import main

    run = tunekit.finetune("classify", data=rows(), model=tiny, epochs=3, **FAST, **EXPORTABLE)
    bundle = run.save(tmp_path / "bundle")
    assert main(["export", bundle, str(tmp_path / "hf"), "--format", "hf"]) == 0
    out = capsys.readouterr().out
    assert 'pipeline("text-classification"' in out
    theirs = pipeline_probabilities(tmp_path / "hf", TEXTS)
    ours = tunekit.load(bundle).predict(TEXTS)
    assert (
        max(abs(o["probabilities"][k] - t[k]) for o, t in zip(ours, theirs) for k in t) < TOLERANCE
    )
    run_default = tunekit.finetune("classify", data=rows(16), model=tiny, epochs=1, **FAST)
    assert main(["export", run_default.save(tmp_path / "b2"), str(tmp_path / "hf2")]) == 1
    assert "pools tokens by 'mean'" in capsys.readouterr().err


def test_minilm_lora_export(tmp_path):
    run = tunekit.finetune(
        "classify",
        data=rows(24),
        strategy="lora",
        epochs=1,
        head="mlp",
        hidden=[384],
        activation="tanh",
        pooling="cls",
        **FAST,
    )
    ours = run.predict(TEXTS)
    theirs = pipeline_probabilities(run.export(tmp_path / "hf"), TEXTS)
    diff = max(abs(o["probabilities"][k] - t[k]) for o, t in zip(ours, theirs) for k in t)
    report("classify/minilm-lora", diff)
    assert [o["label"] for o in ours] == [max(t, key=t.get) for t in theirs]
    assert diff < TOLERANCE
    assert np.isfinite(diff)


def test_a_bf16_run_exports_its_fp32_network(tiny, tmp_path, monkeypatch):
    from tunekit import hardware

    # precision="auto" on a CPU with native bf16 trains under bf16 autocast; the run handed
    # back computes in fp32 when called directly, so the export check (fp32 transformers
    # model vs the run's network) passes, and the run predicts in bf16 only through predict
    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    options = {**FAST, "precision": "auto", **EXPORTABLE}
    # export= is checked before training too, while the trainer's autocast wrapper is on
    path = tmp_path / "hf"
    run = tunekit.finetune("classify", data=rows(), model=tiny, epochs=4, export=path, **options)
    assert run.precision == "bf16"
    theirs = pipeline_probabilities(path, TEXTS)
    bf16 = run.predict(TEXTS)
    run.precision = "fp32"
    fp32 = run.predict(TEXTS)
    exact = max(abs(o["probabilities"][k] - t[k]) for o, t in zip(fp32, theirs) for k in t)
    rounded = max(abs(o["probabilities"][k] - t[k]) for o, t in zip(bf16, theirs) for k in t)
    report("classify/bf16-run", exact)
    assert exact < TOLERANCE < rounded < 2e-2  # bf16 rounds, the network is the same
