"""Sequence packing for training, a prototype: does it pay on this machine?

Packing puts several sequences in one row with reset position ids and a block-diagonal
attention mask, so no matmul runs on padding (what transformers'
``DataCollatorWithFlattening`` does for varlen flash attention). Without a varlen kernel
(CPU: SDPA), the mask is a dense ``[rows, 1, C, C]`` one and attention runs over the whole
packed row, blocks that never attend included.

The same network (embedded MiniLM: CLS → dense + tanh → classifier for ``classify``,
dropout → linear per token for ``ner``) trains on the same length-grouped batches of
sequences (tunekit's ``make_batches``; ``--no-grouping``: random ones) in three modes, one model copy and AdamW each:

- ``padded``: each batch padded to its longest sequence (tunekit today);
- ``packed longest``: the batch's sequences packed first-fit-decreasing into rows as long
  as its longest sequence (never more rows, never longer ones);
- ``packed <C>``: packed into rows of capacity *C* (``--capacity``, the max length by
  default): the fewest rows, attention over *C* positions.

Every step runs the modes back to back on the same batch (A B C A B C …), so load drift
hits all alike; the seconds are the sums over the steps, the ratios the median of per-step
ratios with min-max. Before training, each mode's loss on the first batch is computed on
the same weights with dropout off and must agree with the padded loss (the check that
packing computes the same thing). Every figure is printed; nothing here is a library option
(tunekit has no packing: see docs/performance.md).

    python benchmarks/bench_packing.py --task ner --train 480 --batch-size 16
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from machine import emit, peak_rss_mb, task_data
from torch import nn


def encode(task: str, rows: list[dict], tok, max_length: int):
    """(sequences, labels, label names): token ids per row; a class id (classify) or a
    tag id per token, -100 off a word's first piece (ner, run_ner-style)."""
    if task == "classify":
        names = sorted({r["label"] for r in rows})
        enc = tok([r["text"] for r in rows], truncation=True, max_length=max_length)
        return enc["input_ids"], [names.index(r["label"]) for r in rows], names
    from hf_anchor import token_classification_set

    names = sorted({t for r in rows for t in r["tags"]})
    ds = token_classification_set(tok, rows, names, max_length)
    return list(ds["input_ids"]), list(ds["labels"]), names


def pack(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: lists of sequence indices whose lengths fit *capacity*."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def padded_batch(task, seqs, labels, pad_id):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
    if task == "classify":
        target = torch.tensor(labels)
        where = (torch.arange(len(seqs)), torch.zeros(len(seqs), dtype=torch.long))
    else:
        target = torch.full((len(seqs), width), -100, dtype=torch.long)
        for r, y in enumerate(labels):
            target[r, : len(y)] = torch.tensor(y)
        where = None
    return {"input_ids": ids, "attention_mask": mask}, target, where


def packed_batch(task, seqs, labels, pad_id, capacity):
    """Rows of packed sequences: reset position ids and a block-diagonal additive mask
    (padding at a row's end attends only to itself); *where* locates each sequence's CLS."""
    rows = pack([len(s) for s in seqs], capacity)
    width = max(sum(len(seqs[i]) for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segment = torch.zeros((len(rows), width), dtype=torch.long)  # 0: padding
    target = torch.full((len(rows), width), -100, dtype=torch.long)
    cls_row, cls_col, cls_target = [], [], []
    for r, row in enumerate(rows):
        at = 0
        for k, i in enumerate(row):
            n = len(seqs[i])
            ids[r, at : at + n] = torch.tensor(seqs[i])
            positions[r, at : at + n] = torch.arange(n)
            segment[r, at : at + n] = k + 1
            if task == "classify":
                cls_row.append(r), cls_col.append(at), cls_target.append(labels[i])
            else:
                target[r, at : at + n] = torch.tensor(labels[i])
            at += n
    same = segment[:, :, None] == segment[:, None, :]
    same &= (segment[:, :, None] > 0) | torch.eye(width, dtype=torch.bool)  # pad: itself
    mask = torch.zeros(same.shape, dtype=torch.float32).masked_fill_(
        ~same, torch.finfo(torch.float32).min
    )[:, None]
    batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
    if task == "classify":  # sequences in CLS order; labels follow
        return batch, torch.tensor(cls_target), (torch.tensor(cls_row), torch.tensor(cls_col))
    return batch, target, None


class Net(nn.Module):
    def __init__(self, encoder, task: str, num_labels: int) -> None:
        super().__init__()
        self.encoder, self.task = encoder, task
        hidden = encoder.config.hidden_size
        if task == "classify":
            self.head = nn.Sequential(
                nn.Dropout(0.1), nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(0.1),
                nn.Linear(hidden, num_labels),
            )  # fmt: skip
        else:
            self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(hidden, num_labels))

    def loss(self, batch, target, where):
        hidden = self.encoder(**batch).last_hidden_state
        if self.task == "classify":
            return nn.functional.cross_entropy(self.head(hidden[where]), target)
        logits = self.head(hidden)
        return nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("classify", "ner"), default="classify")
    parser.add_argument("--train", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--capacity", type=int, default=None, help="packed row length (max length)")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--no-grouping",
        action="store_true",
        help="random batches (the Trainer's default): where packing has the most padding to save",
    )
    args = parser.parse_args()

    from transformers import AutoModel, AutoTokenizer

    from tunekit.batching import make_batches
    from tunekit.hardware import configure_threads
    from tunekit.models import embedded_model_path

    configure_threads()
    torch.manual_seed(args.seed)
    path = str(embedded_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    rows, _ = task_data(args.task, args.train, 0)
    seqs, labels, names = encode(args.task, rows, tok, args.max_length)
    lengths = [len(s) for s in seqs]
    batches = make_batches(
        lengths, batch_size=args.batch_size, seed=args.seed, epoch=0,
        group_by_length=not args.no_grouping,
    )  # fmt: skip
    capacity = args.capacity or args.max_length
    modes = {"padded": None, "packed longest": "longest", f"packed {capacity}": capacity}
    base = Net(AutoModel.from_pretrained(path, attn_implementation="sdpa"), args.task, len(names))
    nets = {m: copy.deepcopy(base) for m in modes}
    optims = {m: torch.optim.AdamW(n.parameters(), lr=args.learning_rate) for m, n in nets.items()}

    def make(mode, idx):
        s, y = [seqs[i] for i in idx], [labels[i] for i in idx]
        cap = modes[mode]
        if cap is None:
            return padded_batch(args.task, s, y, tok.pad_token_id)
        return packed_batch(
            args.task, s, y, tok.pad_token_id, max(map(len, s)) if cap == "longest" else cap
        )

    # the same weights, dropout off: every mode's loss on the first batch equals the padded one
    base.eval()
    with torch.no_grad():
        check = {m: float(base.loss(*make(m, batches[0]))) for m in modes}
    cells = {m: 0 for m in modes}  # rows × length the encoder ran
    seconds = {m: [] for m in modes}
    for idx in batches:
        for mode, net in nets.items():
            batch, target, where = make(mode, idx)  # collation outside the clock, as a loader's
            cells[mode] += batch["input_ids"].numel()
            net.train()
            start = time.perf_counter()
            net.loss(batch, target, where).backward()
            optims[mode].step()
            optims[mode].zero_grad(set_to_none=True)
            seconds[mode].append(time.perf_counter() - start)
    real = sum(lengths)
    padded = seconds["padded"]
    result = {
        "task": args.task, "train": len(seqs), "batch_size": args.batch_size,
        "max_length": args.max_length, "capacity": capacity, "steps": len(batches),
        "real_tokens": real, "seed": args.seed, "grouped": not args.no_grouping,
        "first_batch_loss": {m: round(v, 6) for m, v in check.items()},
        "loss_max_abs_diff": max(abs(v - check["padded"]) for v in check.values()),
        "modes": {
            m: {
                "seconds": round(sum(s), 2),
                "padding_efficiency": round(real / cells[m], 4),
                "speedup_median": round(statistics.median(a / b for a, b in zip(padded, s)), 3),
                "speedup_min": round(min(a / b for a, b in zip(padded, s)), 3),
                "speedup_max": round(max(a / b for a, b in zip(padded, s)), 3),
                "speedup_total": round(sum(padded) / sum(s), 3),
            }
            for m, s in seconds.items()
        },
        "peak_rss_mb": peak_rss_mb(),
    }  # fmt: skip
    emit(result)


if __name__ == "__main__":
    main()
