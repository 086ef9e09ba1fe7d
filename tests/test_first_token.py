"""A CLS-pooling head gets the encoder's last layer computed for the first token only: the
same logits and gradients as the full computation, with a one-row query and fewer FLOPs in
that layer; every other head, representation or encoder runs in full. No timings here (the
speedup is measured by benchmarks/run_all.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

import tunekit
from tunekit.first_token import first_token_layer
from tunekit.head import MLPHead
from tunekit.strategies.layer_mix import ScalarMix
from tunekit.taskmodel import TaskModel
from tunekit.testing import make_tiny_model


def bert(attention="sdpa", dropout=0.1, layers=2):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=64, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        attn_implementation=attention,
    )  # fmt: skip
    return BertModel(config)


def batch():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (4, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:], mask[3, 2:] = 0, 0  # padded rows, one nearly empty
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def model(encoder, pooling="cls", dropout=0.1):
    return TaskModel(encoder, MLPHead(32, 3, hidden=(16,), pooling=pooling, dropout=dropout))


def logits(m, b, *, skip):
    m.skip_unread_positions = skip
    with torch.no_grad():
        return m(b)["logits"]


def query_rows(m, b, *, skip) -> list[tuple[int, ...]]:
    """The input shapes the last layer's query projection saw."""
    seen = []
    query = first_token_layer(m.encoder).attention.self.query
    handle = query.register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape)))
    try:
        logits(m, b, skip=skip)
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_logits_equal_the_full_computation(attention):
    m = model(bert(attention)).eval()
    b = batch()
    full = logits(m, b, skip=False)
    pruned = logits(m, b, skip=True)
    torch.testing.assert_close(pruned, full, atol=1e-5, rtol=1e-5)
    # and it was pruned: the last layer's queries are one row per text, its FLOPs fewer
    assert query_rows(m, b, skip=True) == [(4, 1, 32)]
    assert query_rows(m, b, skip=False) == [(4, 11, 32)]
    flops = {}
    for skip in (True, False):
        with FlopCounterMode(display=False) as counter:
            logits(m, b, skip=skip)
        flops[skip] = counter.get_total_flops()
    # the query and output projections (h·h each) and the FFN (h·f twice) of the last layer
    # run for 1 of 11 positions of each text (2 FLOPs a multiply-add); k and v for all
    h, f, saved_tokens = 32, 64, 4 * 10
    assert flops[False] - flops[True] >= 2 * saved_tokens * (2 * h * h + 2 * h * f)


def test_gradients_equal_the_full_computation():
    m = model(bert(dropout=0.0), dropout=0.0).train()
    b = batch()

    def grads(skip):
        m.zero_grad()
        m.skip_unread_positions = skip
        m(b)["logits"].pow(2).sum().backward()
        return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    pruned, full = grads(True), grads(False)
    assert pruned.keys() == full.keys()
    for name in full:
        torch.testing.assert_close(pruned[name], full[name], atol=1e-5, rtol=1e-4, msg=name)


def test_gradient_checkpointing_and_a_deep_copy_keep_it_exact():
    m = model(bert(dropout=0.0), dropout=0.0).train()
    b = batch()
    expected = logits(m, b, skip=False)
    m.encoder.activation_checkpointing_enable(
        activation_checkpointing_kwargs={"use_reentrant": False}
    )
    m.skip_unread_positions = True
    out = m(b)["logits"]
    out.sum().backward()  # the full layers recompute in backward; the pruned one does not
    torch.testing.assert_close(out.detach(), expected, atol=1e-5, rtol=1e-5)
    clone = copy.deepcopy(m)
    with torch.no_grad():
        for p in clone.encoder.encoder.layer[-1].parameters():
            p.add_(0.5)  # a copy computes with its own last layer, not the original's
    assert not torch.allclose(logits(clone, b, skip=True), expected, atol=1e-3)
    torch.testing.assert_close(
        logits(clone, b, skip=True), logits(clone, b, skip=False), atol=1e-5, rtol=1e-5
    )


def test_lora_encoder_is_pruned_too():
    from peft import LoraConfig, get_peft_model

    encoder = get_peft_model(bert(), LoraConfig(r=4, target_modules=["query", "value"]))
    torch.nn.init.normal_(
        encoder.base_model.model.encoder.layer[-1].attention.self.query.lora_B["default"].weight
    )
    m = model(encoder).eval()
    b = batch()
    assert query_rows(m, b, skip=True) == [(4, 1, 32)]
    torch.testing.assert_close(
        logits(m, b, skip=True), logits(m, b, skip=False), atol=1e-5, rtol=1e-5
    )


def test_heads_and_encoders_that_read_more_run_in_full():
    b = batch()
    mean = model(bert(), pooling="mean").eval()
    assert query_rows(mean, b, skip=True) == [(4, 11, 32)]
    mixed = TaskModel(bert(), MLPHead(32, 3, pooling="cls"), ScalarMix(3)).eval()
    assert query_rows(mixed, b, skip=True) == [(4, 11, 32)]
    # the encoder used directly (exports, embeddings) always returns every position
    cls = model(bert()).eval()
    cls(b)
    assert cls.encoder(**b).last_hidden_state.shape == (4, 11, 32)
    # an architecture outside the BERT family: not prepared, and it still works
    distil = DistilBertModel(
        DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4, hidden_dim=64)
    )
    assert first_token_layer(distil) is None
    out = TaskModel(distil, MLPHead(32, 3, pooling="cls")).eval()({"input_ids": b["input_ids"]})
    assert out["logits"].shape == (4, 3)


def test_finetune_with_a_cls_head_trains_and_predicts_as_the_full_model(tmp_path):
    tunekit.plugins.reset()
    texts = ["good film", "bad film", "great plot", "awful cast", "lovely story", "dull story"]
    tiny = make_tiny_model(tmp_path / "bert", texts)
    data = [{"text": t, "label": "pos" if i % 2 == 0 else "neg"} for i, t in enumerate(texts * 4)]
    run = tunekit.finetune(
        task="classify", model=tiny, data=data, eval_split=0, epochs=2, batch_size=8,
        max_length=16, pooling="cls", head="mlp", hidden=[16], progress=False,
    )  # fmt: skip
    assert first_token_layer(run.model.encoder) is not None  # the trained model is pruned
    pruned = [p["probabilities"] for p in run.predict(texts)]
    run.model.skip_unread_positions = False
    full = [p["probabilities"] for p in run.predict(texts)]
    for a, b in zip(pruned, full):
        assert a.keys() == b.keys()
        assert all(abs(a[k] - b[k]) < 1e-5 for k in a)


def test_a_detached_copy_of_a_used_model_is_pruned_too():
    """An export's copy (taskmodel.detached_copy drops instance-level forwards) of a model
    that already ran pruned still runs its last layer for the first token only."""
    from tunekit.taskmodel import detached_copy

    m = model(bert(dropout=0.0), dropout=0.0).eval()
    b = batch()
    assert query_rows(m, b, skip=True) == [(4, 1, 32)]  # the flag now lives on the layer
    copied = detached_copy(m, m)
    assert query_rows(copied, b, skip=True) == [(4, 1, 32)]
    torch.testing.assert_close(
        logits(copied, b, skip=True), logits(m, b, skip=False), atol=1e-5, rtol=1e-5
    )
