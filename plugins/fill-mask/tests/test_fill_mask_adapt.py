"""Domain adaptation: a fill-mask bundle's encoder feeds another task as ``model=``."""

import pytest
import torch

import tunekit
from tunekit.assembly import load_backbone


def _same_encoder(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_fill_mask_bundle_is_model_for_classify(strategy, en_model, en_corpus, tmp_path):
    if strategy not in tunekit.list_strategies():
        pytest.skip(f"strategy {strategy} not installed")
    mlm = tunekit.finetune(
        task="fill-mask",
        model=en_model,
        data=en_corpus,
        eval_split=0.0,
        strategy=strategy,
        epochs=2,
        batch_size=8,
        learning_rate=5e-3,
        max_length=32,
        progress=False,
    )
    mlm.save(tmp_path / "mlm-adapted")
    adapted = load_backbone(tmp_path / "mlm-adapted")
    expected = mlm.strategy.merged_model(mlm.model).encoder
    assert _same_encoder(adapted.model, expected)
    assert not _same_encoder(adapted.model, load_backbone(en_model).model)  # it did adapt
    # export_encoder writes a plain save_pretrained directory with the same weights
    mlm.export_encoder(tmp_path / "encoder")
    assert _same_encoder(load_backbone(tmp_path / "encoder").model, expected)

    data = [(t, "pos" if "good" in t or "capital" in t else "neg") for t in en_corpus]
    clf = tunekit.finetune(
        task="classify",
        model=tmp_path / "mlm-adapted",
        data=data,
        eval_split=0.0,
        epochs=4,
        batch_size=8,
        learning_rate=5e-3,
        max_length=32,
        progress=False,
    )
    assert clf.history.rows[-1]["train_loss"] < clf.history.rows[0]["train_loss"]
    clf.save(tmp_path / "clf")
    again = tunekit.load(tmp_path / "clf")
    assert again.predict("a good film") == clf.predict("a good film")


def test_fill_mask_bundle_continues_with_its_head(en_model, en_corpus, tmp_path):
    first = tunekit.finetune(
        task="fill-mask",
        model=en_model,
        data=en_corpus,
        eval_split=0.0,
        epochs=2,
        batch_size=8,
        learning_rate=5e-3,
        max_length=32,
        progress=False,
    )
    first.save(tmp_path / "stage1")
    backbone = load_backbone(tmp_path / "stage1")
    from tunekit_fill_mask import FillMaskTask

    task = FillMaskTask()
    head = task.build_head(backbone)
    assert task.head_origin == "pretrained"
    want, got = first.model.head.state_dict(), head.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    query = "the capital of [MASK] is paris ."
    second = tunekit.finetune(
        task="fill-mask",
        model=tmp_path / "stage1",
        data=en_corpus,
        eval_split=0.0,
        epochs=1,
        learning_rate=1e-12,
        max_length=32,
        progress=False,
    )
    assert [c["token"] for c in second.predict(query, top_k=3)] == [
        c["token"] for c in first.predict(query, top_k=3)
    ]
