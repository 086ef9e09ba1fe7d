"""Behaviour of the fill-mask task: masking, eval determinism, predict format, errors, heads."""

import pytest
import torch
from tunekit_fill_mask import FillMaskTask, Masker
from tunekit_fill_mask.head import TiedDecoder
from tunekit_fill_mask.task import FillMaskConfig

import tunekit
from tunekit.assembly import load_backbone
from tunekit.errors import ConfigError, DataError


def test_masker_follows_bert_15_80_10_10(en_model):
    tok = load_backbone(en_model).tokenizer
    torch.manual_seed(0)
    ids = torch.randint(10, len(tok), (200, 100))
    special = torch.zeros_like(ids)
    special[:, 0] = special[:, -1] = 1
    masked, labels = Masker(tok)(ids, special)
    chosen = labels != -100
    assert abs(chosen[:, 1:-1].float().mean().item() - 0.15) < 0.01
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    as_mask = (masked == tok.mask_token_id) & chosen
    kept = (masked == ids) & chosen
    assert abs(as_mask.sum().item() / chosen.sum().item() - 0.8) < 0.03
    assert (
        abs(kept.sum().item() / chosen.sum().item() - 0.1) < 0.03
    )  # (+ random hits of the same id)
    assert torch.equal(labels[chosen], ids[chosen])


def test_eval_masks_fixed_train_masks_fresh(en_model, en_corpus):
    tok = load_backbone(en_model).tokenizer
    task = FillMaskTask(FillMaskConfig(mlm_probability=0.3))
    feats = task.encode([{"text": t} for t in en_corpus], tok, max_length=32, with_labels=True)
    a, b = task.collate(feats, tok), task.collate(feats, tok)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert (a["labels"] != -100).any()
    torch.manual_seed(0)
    t1, t2 = task.collate_train(feats, tok), task.collate_train(feats, tok)
    assert not torch.equal(t1["labels"], t2["labels"])
    # a feature's eval mask does not depend on the batch it is in
    alone = task.collate(feats[3:4], tok)
    assert torch.equal(
        alone["labels"][0, : len(feats[3]["input_ids"])],
        a["labels"][3, : len(feats[3]["input_ids"])],
    )


def test_chinese_whole_word_masking_uses_jieba_words(zh_model):
    pytest.importorskip("jieba", reason="the [zh] extra (jieba) is not installed")
    tok = load_backbone(zh_model).tokenizer
    text = "巴黎是法国的首都"
    for segmenter, expected in (
        ("jieba", [-1, 0, 0, 1, 2, 2, 3, 4, 4, -1]),
        ("char", [-1, 0, 1, 2, 3, 4, 5, 6, 7, -1]),
    ):
        task = FillMaskTask(
            FillMaskConfig(
                whole_word_masking=True, chinese_segmenter=segmenter, mlm_probability=0.5
            )
        )
        (feat,) = task.encode([{"text": text}], tok, max_length=32, with_labels=True)
        assert feat["_words"] == expected
    task = FillMaskTask(
        FillMaskConfig(whole_word_masking=True, chinese_segmenter="jieba", mlm_probability=0.5)
    )
    feats = task.encode([{"text": text}] * 64, tok, max_length=32, with_labels=True)
    labels = task.collate(feats, tok)["labels"] != -100
    # 巴黎 (positions 1-2) and 首都 (7-8) are masked together or not at all
    assert torch.equal(labels[:, 1], labels[:, 2]) and torch.equal(labels[:, 7], labels[:, 8])
    assert labels[:, 1].any() and not labels[:, 1].all()


def test_grouped_blocks(en_model, en_corpus):
    tok = load_backbone(en_model).tokenizer
    task = FillMaskTask(FillMaskConfig(line_by_line=False))
    feats = task.encode([{"text": t} for t in en_corpus], tok, max_length=16, with_labels=True)
    total = sum(len(tok(t)["input_ids"]) for t in en_corpus)
    assert all(len(f["input_ids"]) == 16 for f in feats[:-1])
    assert sum(len(f["input_ids"]) for f in feats) == total


@pytest.fixture(scope="module")
def en_run(en_model, en_corpus):
    return tunekit.finetune(
        task="mlm",
        model=en_model,
        data=en_corpus,
        eval_data=en_corpus[:8],
        epochs=12,
        batch_size=8,
        learning_rate=3e-3,
        warmup_ratio=0.0,
        max_length=32,
        mlm_probability=0.3,
        progress=False,
    )


def test_training_lowers_eval_loss_and_predicts_like_pipeline(en_run):
    rows = en_run.history.rows
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"]
    assert {"perplexity", "masked_accuracy"} <= set(rows[-1])
    out = en_run.predict("the capital of france is [MASK] .", top_k=5)
    assert len(out) == 5 and set(out[0]) == {"score", "token", "token_str", "sequence"}
    assert out[0]["sequence"].startswith(f"the capital of france is {out[0]['token_str']}")
    two = en_run.predict("the [MASK] sat on the [MASK] .", top_k=2)
    assert len(two) == 2 and all(len(c) == 2 for c in two)
    assert en_run.predict(["[MASK] cat", "[MASK] dog"], top_k=1)[1][0]["sequence"].endswith("dog")


def test_predict_errors(en_run):
    with pytest.raises(DataError, match="no mask"):
        en_run.predict("the capital of france is paris .")
    with pytest.raises(ConfigError, match="top_k"):
        en_run.predict("the [MASK] .", top_k=0)


def test_save_load_round_trip(en_run, tmp_path):
    en_run.save(tmp_path / "b")
    loaded = tunekit.load(tmp_path / "b")
    assert loaded.predict("the [MASK] sat on the mat .", top_k=3) == en_run.predict(
        "the [MASK] sat on the mat .", top_k=3
    )
    assert loaded.task.head_origin == "new"


def test_new_head_is_tied_to_word_embeddings(en_run):
    decoders = [m for m in en_run.model.head.modules() if isinstance(m, TiedDecoder)]
    assert len(decoders) == 1
    assert decoders[0].weight is en_run.model.encoder.get_input_embeddings().weight
    assert all("word_embeddings" not in n for n, _ in en_run.model.head.named_parameters())


def test_pretrained_mlm_head_is_loaded(en_model, tmp_path):
    from transformers import AutoModelForMaskedLM

    mlm = AutoModelForMaskedLM.from_pretrained(en_model)
    with torch.no_grad():
        mlm.cls.predictions.transform.dense.weight.normal_()
    mlm.save_pretrained(tmp_path / "with-head")
    load_backbone(en_model).tokenizer.save_pretrained(tmp_path / "with-head")
    backbone = load_backbone(tmp_path / "with-head")
    task = FillMaskTask()
    head = task.build_head(backbone)
    assert task.head_origin == "pretrained"
    assert torch.equal(
        head.lm.predictions.transform.dense.weight, mlm.cls.predictions.transform.dense.weight
    )
    with pytest.raises(ConfigError, match="no masked-LM head"):
        FillMaskTask(FillMaskConfig(head="pretrained")).build_head(load_backbone(en_model))


def test_bad_data_and_options():
    with pytest.raises(DataError, match="no text"):
        FillMaskTask().read(["", "   "])
    with pytest.raises(ConfigError, match="must not exceed 1"):
        FillMaskConfig(mask_replace_prob=0.9, random_replace_prob=0.2)
    with pytest.raises(ConfigError):
        tunekit.finetune(task="fill-mask", data=["a b"], mlm_probabilty=0.2)


def test_roberta_pretrained_lm_head_and_mask_placeholder(tmp_path):
    """A RoBERTa checkpoint with ``lm_head.*`` weights: its head is used, ``[MASK]`` → ``<mask>``."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    corpus = ["the capital of france is paris .", "the cat sat on the mat ."] * 4
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    bpe.save_model(str(tmp_path))
    tok = RobertaTokenizerFast(
        vocab=str(tmp_path / "vocab.json"), merges=str(tmp_path / "merges.txt")
    )
    torch.manual_seed(0)
    cfg = RobertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        pad_token_id=tok.pad_token_id,
    )
    mlm = RobertaForMaskedLM(cfg)
    mlm.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    task = FillMaskTask()
    head = task.build_head(load_backbone(tmp_path))
    assert task.head_origin == "pretrained"
    assert torch.equal(head.lm.dense.weight, mlm.lm_head.dense.weight)
    run = tunekit.finetune(
        task="fill-mask",
        model=tmp_path,
        data=corpus,
        eval_split=0.0,
        epochs=1,
        max_length=24,
        progress=False,
    )
    out = run.predict("the capital of france is[MASK].", top_k=2)
    assert len(out) == 2 and all("[MASK]" not in c["sequence"] for c in out)
    assert out[0]["sequence"].startswith("the capital of france is")
