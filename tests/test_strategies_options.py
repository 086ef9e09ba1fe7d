"""Strategy options: what each one freezes, lr decay groups, and clear errors for bad options."""

from __future__ import annotations

import pytest

import tunekit
from tunekit.api import build_run
from tunekit.assembly import load_backbone
from tunekit.config import TrainingConfig
from tunekit.errors import ConfigError, UnknownNameError
from tunekit.strategies import FullStrategy, LayerMixStrategy, LoraStrategy, TopKStrategy
from tunekit.strategies.full import FullConfig
from tunekit.strategies.lora import LoraConfig
from tunekit.strategies.top_k import TopKConfig
from tunekit.testing import make_tiny_model

ROWS = [{"text": "good film", "label": "pos"}, {"text": "bad film", "label": "neg"}] * 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(
        tmp_path_factory.mktemp("tiny") / "bert", [r["text"] for r in ROWS], num_layers=3
    )


def built(tiny, strategy):
    task = tunekit.get_task("classify")()
    task.setup(ROWS)
    _, run = build_run(task, strategy, load_backbone(tiny), TrainingConfig())
    return run.model


def finetune(tiny, strategy, **options):
    return tunekit.finetune(
        "classify",
        data=ROWS,
        model=tiny,
        strategy=strategy,
        epochs=1,
        eval_split=0,
        progress=False,
        max_length=16,
        **options,
    )


def test_top_k_trains_only_the_last_k_layers_and_the_head(tiny):
    model = built(tiny, TopKStrategy(TopKConfig(k=2)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("head.") for n in trainable)
    encoder = {n for n in trainable if n.startswith("encoder.")}
    assert encoder and all(".layer.1." in n or ".layer.2." in n for n in encoder)
    assert not any("embeddings" in n or "pooler" in n for n in encoder)


def test_full_lr_decay_scales_each_layer(tiny):
    model = built(tiny, FullStrategy(FullConfig(lr_decay=0.5)))
    groups = FullStrategy(FullConfig(lr_decay=0.5)).parameter_groups(
        model, learning_rate=1.0, weight_decay=0.01
    )
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["head.net.1.weight"])] == 1.0
    assert lr_of[id(named["encoder.encoder.layer.2.attention.self.query.weight"])] == 0.5
    assert lr_of[id(named["encoder.encoder.layer.0.attention.self.query.weight"])] == 0.125
    assert lr_of[id(named["encoder.embeddings.word_embeddings.weight"])] == 0.0625
    assert sum(len(g["params"]) for g in groups) == len(named)
    no_decay = [g for g in groups if g["weight_decay"] == 0.0]
    assert any(
        p is named["encoder.embeddings.LayerNorm.weight"] for g in no_decay for p in g["params"]
    )


def test_lora_default_targets_are_attention_projections(tiny):
    model = built(tiny, LoraStrategy(LoraConfig(r=2)))
    lora = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")]
    assert lora and all("lora_" in n and (".query." in n or ".value." in n) for n in lora)
    assert all(p.requires_grad for p in model.head.parameters())


def test_layer_mix_starts_uniform_and_freezes_the_encoder(tiny):
    model = built(tiny, LayerMixStrategy())
    assert model.representation.layer_weights() == pytest.approx([0.25] * 4)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert model.train().encoder.training is False  # frozen encoder: no dropout


def test_k_larger_than_the_layer_count_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match=r"k=4 is larger than the model's 3 layers"):
        finetune(tiny, "top-k", k=4)


def test_target_modules_matching_nothing_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match=r"target_modules \['q_proj'\] match no module.*query"):
        finetune(tiny, "lora", target_modules=["q_proj"])
    with pytest.raises(ConfigError, match="matches no module"):
        finetune(tiny, "peft", method="ia3", target_modules=r".*\.nothing")


def test_option_of_another_strategy_is_rejected(tiny):
    with pytest.raises(
        ConfigError, match=r"unknown option 'k' for task 'classify' with strategy 'frozen'"
    ):
        finetune(tiny, "frozen", k=2)
    with pytest.raises(ConfigError, match="unknown option 'r'"):
        finetune(tiny, "layer-mix", r=8)


def test_unknown_strategy_and_method_suggest_close_matches(tiny):
    with pytest.raises(UnknownNameError, match="lora"):
        finetune(tiny, "lroa")
    with pytest.raises(ConfigError, match="adalora"):
        finetune(tiny, "peft", method="adalor")


def test_bad_values_are_config_errors(tiny):
    for strategy, options in [
        ("full", {"lr_decay": 1.5}),
        ("lora", {"r": 0}),
        ("lora", {"lora_dropout": 1.0}),
        ("top-k", {"k": 0}),
    ]:
        with pytest.raises(ConfigError):
            finetune(tiny, strategy, **options)


def test_trainable_parameters_are_logged_at_start(tiny, caplog):
    with caplog.at_level("INFO", logger="tunekit"):
        run = finetune(tiny, "lora", r=2)
    assert "parameters trainable" in caplog.text
    assert run.history.info["trainable_percent"] < 50
