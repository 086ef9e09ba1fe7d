"""Fill-mask runs exported to transformers: ``AutoModelForMaskedLM`` in the ``fill-mask``
pipeline gives the run's candidates and scores, with the output projection still tied to
the word embeddings."""

from __future__ import annotations

import pytest
from transformers import AutoModelForMaskedLM, pipeline

import tunekit

#: fp32: the exported model is fp32 and must predict what the run predicts to float
#: precision (precision="auto" would be bf16 autocast on a CPU with AMX / AVX512-BF16)
TRAIN = dict(
    epochs=3,
    learning_rate=5e-3,
    batch_size=8,
    max_length=32,
    eval_split=0,
    progress=False,
    precision="fp32",
)
QUERIES = [
    "the capital of france is [MASK] .",
    "the cat sat on the [MASK] .",
    "a good [MASK] with a great cast .",
]


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_pipeline_gives_the_same_candidates(en_model, en_corpus, tmp_path, strategy):
    run = tunekit.finetune("fill-mask", data=en_corpus, model=en_model, strategy=strategy, **TRAIN)
    path = run.export(tmp_path / "hf")
    pipe = pipeline("fill-mask", model=path)
    diff = 0.0
    for query in QUERIES:
        ours, theirs = run.predict(query, top_k=5), pipe(query, top_k=5)
        assert [c["token"] for c in ours] == [c["token"] for c in theirs], query
        assert [c["sequence"] for c in ours] == [c["sequence"] for c in theirs]
        diff = max(diff, *(abs(a["score"] - b["score"]) for a, b in zip(ours, theirs)))
    print(f"parity fill-mask/{strategy}: max abs diff {diff:.3e}")
    assert diff < 1e-5
    model = AutoModelForMaskedLM.from_pretrained(path)
    assert (
        model.get_output_embeddings().weight.data_ptr()
        == model.get_input_embeddings().weight.data_ptr()
    )
