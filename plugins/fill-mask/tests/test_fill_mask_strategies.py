"""fill-mask trains and round-trips under every registered strategy."""

import pytest
import torch

import tunekit


@pytest.mark.parametrize("strategy", tunekit.list_strategies())
def test_every_strategy_trains_and_round_trips(strategy, en_model, en_corpus, tmp_path):
    run = tunekit.finetune(
        task="fill-mask",
        model=en_model,
        data=en_corpus,
        eval_data=en_corpus[:8],
        strategy=strategy,
        epochs=4,
        batch_size=8,
        learning_rate=5e-3,
        warmup_ratio=0.0,
        max_length=32,
        mlm_probability=0.3,
        progress=False,
    )
    rows = run.history.rows
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"], rows
    decoder_weight = run.model.encoder.get_input_embeddings().weight
    if strategy != "full":  # the tied output matrix only trains with the encoder's embeddings
        assert not decoder_weight.requires_grad or strategy in ("top-k",)
    run.save(tmp_path / strategy)
    loaded = tunekit.load(tmp_path / strategy)
    query = "the [MASK] sat on the mat ."
    assert loaded.predict(query, top_k=3) == run.predict(query, top_k=3)
    assert torch.isclose(
        torch.tensor(loaded.evaluate(en_corpus[:8])["eval_loss"]),
        torch.tensor(run.metrics["eval_loss"]),
    )
