"""Pair runs exported to transformers: cross-encoders load in the ``text-classification``
pipeline with text pairs and give the run's predictions; bi-encoders export the encoder
(``feature-extraction``) whose pooled embeddings give the run's similarity."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import pipeline

import tunekit
from tunekit.errors import ExportError

#: fp32: the exported model is fp32 and must predict what the run predicts to float
#: precision (precision="auto" would be bf16 autocast on a CPU with AMX / AVX512-BF16)
TRAIN = dict(
    epochs=6,
    learning_rate=1e-2,
    batch_size=8,
    max_length=32,
    eval_split=0,
    progress=False,
    precision="fp32",
)
EXPORTABLE = dict(head="mlp", hidden=[32], activation="tanh", pooling="cls")
INPUTS = [
    ("how old are you", "what is your age"),
    ("the cat sat on the mat", "the stock market fell today"),
    ("i like green tea", "green tea is what i like"),
    ("where is the station", "my dog likes to run"),
]


def records(pairs, label=lambda same: str(same)):
    return [{"text_a": a, "text_b": b, "label": label(same)} for a, b, same in pairs * 3]


def as_pipeline_inputs(pairs):
    return [{"text": a, "text_pair": b} for a, b in pairs]


@pytest.mark.parametrize("task", ["pair-sim", "pair-cls"])
def test_cross_encoder_classification_parity(task, en_model, en_pairs, tmp_path):
    run = tunekit.finetune(task, data=records(en_pairs), model=en_model, **TRAIN, **EXPORTABLE)
    ours = run.predict(INPUTS)
    assert {p["label"] for p in ours} == {"0", "1"}
    pipe = pipeline("text-classification", model=run.export(tmp_path / "hf"), top_k=None)
    theirs = [{d["label"]: d["score"] for d in out} for out in pipe(as_pipeline_inputs(INPUTS))]
    assert [p["label"] for p in ours] == [max(t, key=t.get) for t in theirs]
    if task == "pair-sim":
        diff = max(abs(p["probability"] - t["1"]) for p, t in zip(ours, theirs))
    else:
        diff = max(abs(p["probabilities"][k] - t[k]) for p, t in zip(ours, theirs) for k in t)
    print(f"parity {task}: max abs diff {diff:.3e}")
    assert diff < 1e-5


def test_sts_cross_encoder_exports_the_score(en_model, en_pairs, tmp_path):
    data = records(en_pairs, label=lambda same: 1.0 + 3.0 * same)  # scores 1..4
    run = tunekit.finetune("sts", data=data, model=en_model, **TRAIN, **EXPORTABLE)
    ours = [p["score"] for p in run.predict(INPUTS)]
    pipe = pipeline("text-classification", model=run.export(tmp_path / "hf"))
    theirs = [d["score"] for d in pipe(as_pipeline_inputs(INPUTS), function_to_apply="none")]
    clipped = np.clip(theirs, 1.0, 4.0)  # tunekit clips to score_range; the pipeline does not
    diff = float(np.max(np.abs(np.array(ours) - clipped)))
    print(f"parity sts: max abs diff {diff:.3e}")
    assert diff < 1e-4 and max(ours) > min(ours)  # scores in 1..4, not the 0-1 target


def test_bi_encoder_exports_the_encoder(en_model, en_pairs, tmp_path):
    run = tunekit.finetune(
        "pair-sim", data=records(en_pairs), model=en_model, architecture="bi-encoder", **TRAIN
    )
    ours = [p["similarity"] for p in run.predict(INPUTS)]
    path = run.export(tmp_path / "hf")
    pipe = pipeline("feature-extraction", model=path)

    def embed(text):  # mean pooling, as the run's head does (one text: no padding)
        return np.asarray(pipe(text))[0].mean(0)

    theirs = []
    for a, b in INPUTS:
        u, v = embed(a), embed(b)
        theirs.append(float(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
    diff = float(np.max(np.abs(np.array(ours) - theirs)))
    print(f"parity pair-sim bi-encoder (cosine): max abs diff {diff:.3e}")
    assert diff < 1e-5

    projected = tunekit.finetune(
        "pair-sim",
        data=records(en_pairs),
        model=en_model,
        architecture="bi-encoder",
        projection=16,
        **{**TRAIN, "epochs": 1},
    )
    with pytest.raises(ExportError, match="projection layer.*train without projection"):
        projected.export(tmp_path / "p")


def test_default_mean_pooled_head_is_refused(en_model, en_pairs, tmp_path):
    run = tunekit.finetune(
        "pair-sim", data=records(en_pairs), model=en_model, **{**TRAIN, "epochs": 1}
    )
    with pytest.raises(
        ExportError, match=r"task 'pair-sim'.*pools tokens by 'mean'.*pooling='cls'"
    ):
        run.export(tmp_path / "hf")
