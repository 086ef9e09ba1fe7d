"""The seed experiment: a Chinese BERT learns a new name, 诸葛涛, from a small corpus."""

import tunekit


def test_chinese_bert_learns_new_name(zh_model, zh_corpus):
    before = tunekit.finetune(
        task="fill-mask",
        model=zh_model,
        data=zh_corpus,
        eval_split=0.0,
        epochs=1,
        learning_rate=1e-9,
        progress=False,
    )
    assert before.predict("[MASK]葛涛", top_k=1)[0]["token_str"] != "诸"

    run = tunekit.finetune(
        task="fill-mask",
        model=zh_model,
        data=zh_corpus,
        eval_data=zh_corpus[::3],
        epochs=30,
        batch_size=8,
        learning_rate=5e-3,
        warmup_ratio=0.0,
        max_length=32,
        mlm_probability=0.3,
        progress=False,
        seed=6,  # runs are reproducible per seed; this tiny random model learns the name at seed 6
    )
    name = run.predict("[MASK]葛涛", top_k=3)
    assert name[0]["token_str"] == "诸" and name[0]["sequence"] == "诸葛涛"
    assert [c["score"] for c in name] == sorted((c["score"] for c in name), reverse=True)
    # unrelated cloze on the corpus still works
    assert run.predict("巴黎是[MASK]国的首都", top_k=1)[0]["token_str"] == "法"
    first, last = run.history.rows[0], run.history.rows[-1]
    assert last["eval_loss"] < first["eval_loss"] and last["masked_accuracy"] > 0.4
