"""Training throughput of the embedded MiniLM across sequence length × batch size.

One full training step as tunekit's trainer runs it (forward, cross-entropy on the
classifier head, backward, gradient clipping, fused AdamW step) on batches of random
token ids exactly *max_length* long (no padding: the cost curve of the lengths
themselves). For each length one warm-up step, then for each batch size steps are timed
until ``--seconds`` have passed (at least one). Reports samples/s, tokens/s and the
achieved TFLOP/s (6·params·tokens + attention).

    python benchmarks/bench_scaling.py [--lengths 64,128,256,512 --batches 8,16,32,64]
"""

from __future__ import annotations

import argparse
import time

from machine import emit, minilm_shape, model_flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="64,128,256,512")
    parser.add_argument("--batches", default="8,16,32,64")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--seconds", type=float, default=1.0, help="timed per configuration")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from tunekit.assembly import load_backbone
    from tunekit.hardware import configure_threads
    from tunekit.head import LinearHead
    from tunekit.taskmodel import TaskModel
    from tunekit.trainer import _adamw

    configure_threads()
    torch.manual_seed(0)
    backbone = load_backbone("minilm")
    model = TaskModel(backbone.model, LinearHead(backbone.hidden_size, 2, pooling="cls")).train()
    optimizer = _adamw([{"params": list(model.parameters())}], lr=1e-5)
    shape = minilm_shape()
    vocab = backbone.config.vocab_size
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step(batch_size: int, length: int) -> None:
        ids = torch.randint(1000, vocab, (batch_size, length))
        batch = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
        }
        with autocast:
            logits = model(batch)["logits"]
        loss = F.cross_entropy(logits.float(), torch.randint(0, 2, (batch_size,)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rows = []
    for length in (int(x) for x in args.lengths.split(",")):
        batches = [int(x) for x in args.batches.split(",")]
        step(batches[0], length)  # warm-up for this length
        for batch_size in batches:
            count, start = 0, time.perf_counter()
            while True:
                step(batch_size, length)
                count += 1
                elapsed = time.perf_counter() - start
                if elapsed >= args.seconds:
                    break
            samples_per_s = batch_size * count / elapsed
            flops = model_flops([length] * batch_size, shape, training=True) * count
            rows.append(
                {
                    "max_length": length,
                    "batch_size": batch_size,
                    "steps": count,
                    "samples_per_s": round(samples_per_s, 2),
                    "tokens_per_s": round(samples_per_s * length, 1),
                    "tflops": round(flops / elapsed / 1e12, 4),
                }
            )
    emit({"precision": args.precision, "threads": torch.get_num_threads(), "rows": rows})


if __name__ == "__main__":
    main()
