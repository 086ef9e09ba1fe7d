"""The 🤗 Trainer anchor's datasets, built as the transformers example scripts build them
(``run_glue.py`` for text classification, ``run_ner.py`` for tagging), shared by the
benchmarks that train the Trainer beside tunekit."""

from __future__ import annotations

from typing import Any


def text_classification_set(tok: Any, rows: list[dict], labels: list, max_length: int) -> Any:
    """``rows`` (``text``, ``label``) as a tokenized ``datasets.Dataset`` with label ids."""
    from datasets import Dataset

    d = Dataset.from_list([{"text": r["text"], "label": labels.index(r["label"])} for r in rows])
    return d.map(
        lambda b: tok(b["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
    )


def token_classification_set(tok: Any, rows: list[dict], labels: list, max_length: int) -> Any:
    """``rows`` (``tokens``, ``tags``) tokenized with each word's tag on its first piece and
    -100 elsewhere (``run_ner.py``'s ``tokenize_and_align_labels``, label_all_tokens=False)."""
    from datasets import Dataset

    def align(batch):
        enc = tok(batch["tokens"], truncation=True, max_length=max_length,
                  is_split_into_words=True)  # fmt: skip
        enc["labels"] = []
        for i, tags in enumerate(batch["tags"]):
            previous, ids = None, []
            for word in enc.word_ids(batch_index=i):
                ids.append(-100 if word is None or word == previous else labels.index(tags[word]))
                previous = word
            enc["labels"].append(ids)
        return enc

    d = Dataset.from_list([{"tokens": r["tokens"], "tags": r["tags"]} for r in rows])
    return d.map(align, batched=True, remove_columns=["tokens", "tags"])
