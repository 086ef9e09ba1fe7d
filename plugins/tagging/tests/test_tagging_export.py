"""Token-tagging runs exported to transformers: ``AutoModelForTokenClassification`` in the
``token-classification`` pipeline tags every word as the run does; a CRF is refused."""

from __future__ import annotations

import pytest
from transformers import pipeline

import tunekit
from tunekit.errors import ExportError

SENTENCES = [
    "john smith lives in paris",
    "we met anna in tokyo today",
    "acme corp opened an office in rome",
]


def records(sentences):
    return [
        {"tokens": [t.lower() for t, _, _ in s], "tags": [n for _, _, n in s]} for s in sentences
    ]


def test_softmax_head_pipeline_parity(en_model, en_sentences, train_opts, tmp_path):
    # fp32: the exported model is fp32 and the scores must agree to float precision
    # (precision="auto" would be bf16 autocast on a CPU with AMX / AVX512-BF16)
    options = {**train_opts, "precision": "fp32"}
    run = tunekit.finetune("ner", data=records(en_sentences), model=en_model, **options)
    words = [s.split() for s in SENTENCES]
    ours = run.predict(words)  # one tag per word
    assert len({t for tags in ours for t in tags}) >= 3
    path = run.export(tmp_path / "hf")
    pipe = pipeline(
        "token-classification", model=path, aggregation_strategy="none", ignore_labels=[]
    )
    for sentence, tags in zip(SENTENCES, ours):
        tokens = pipe(sentence)
        # the first sub-token of each word carries the word's tag (tunekit's rule)
        firsts = [t for t in tokens if not t["word"].startswith("##")]
        assert [t["entity"] for t in firsts] == tags, sentence

    # scores too: a one-word entity's score is its word's probability, the pipeline's token score
    spans = run.predict(SENTENCES[0])
    tokens = {t["start"]: float(t["score"]) for t in pipe(SENTENCES[0])}
    single = [span for span in spans if " " not in span["text"]]
    assert single
    diff = max(abs(span["score"] - tokens[span["start"]]) for span in single)
    print(f"parity token-tagging: max abs diff {diff:.3e}")
    assert diff < 1e-5
    grouped = pipeline("token-classification", model=path, aggregation_strategy="first")(
        SENTENCES[0]
    )
    assert [(g["entity_group"], g["word"]) for g in grouped] == [
        (s["label"], s["text"]) for s in spans
    ]


def test_crf_head_is_refused(en_model, en_sentences, train_opts, tmp_path):
    run = tunekit.finetune(
        "ner", data=records(en_sentences), model=en_model, head="crf", **{**train_opts, "epochs": 1}
    )
    with pytest.raises(ExportError, match="CRF head.*head='softmax'"):
        run.export(tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_hidden_layers_are_refused(en_model, en_sentences, train_opts, tmp_path):
    run = tunekit.finetune(
        "ner",
        data=records(en_sentences),
        model=en_model,
        hidden=[16],
        **{**train_opts, "epochs": 1},
    )
    with pytest.raises(ExportError, match="2 linear layers.*hidden=\\[\\]"):
        run.export(tmp_path / "hf")
