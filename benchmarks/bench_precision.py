"""bf16 autocast vs fp32 on the embedded MiniLM: one training step and one predict forward,
timed alternately in one process (fp32, bf16, then bf16, fp32, …), so that both precisions
see the same machine load; the speedup is the median of the per-round ratios.

What ``precision="auto"`` rests on (bf16 on a CPU with AMX or AVX512-BF16). A training step
is what tunekit's trainer runs: forward under autocast, cross-entropy on a CLS classifier,
backward, gradient clipping, fused AdamW. A predict forward runs under
``torch.inference_mode()``. Batches are random token ids exactly ``length`` long.
``--threads 1`` keeps the figures steady on a shared machine (several processes' OpenMP
threads on few CPUs wait on each other); the end-to-end comparison is the *Techniques*
table of ``run_all.py``.

    python benchmarks/bench_precision.py --threads 1 [--lengths 32,64,128] [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

from machine import cpu_line, emit, machine_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: tunekit's)"
    )
    parser.add_argument("--lengths", default="32,64,128")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--predict-batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="steps timed per round and side")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from tunekit.assembly import load_backbone
    from tunekit.hardware import configure_threads
    from tunekit.head import LinearHead
    from tunekit.taskmodel import TaskModel
    from tunekit.trainer import _adamw

    configure_threads(args.threads)
    print(cpu_line(machine_info()), flush=True)
    torch.manual_seed(0)
    backbone = load_backbone("minilm")
    model = TaskModel(backbone.model, LinearHead(backbone.hidden_size, 2, pooling="cls"))
    optimizer = _adamw([{"params": list(model.parameters())}], lr=1e-5)
    vocab = backbone.config.vocab_size

    def batch(rows: int, length: int) -> dict:
        ids = torch.randint(1000, vocab, (rows, length))
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
        }

    def autocast(precision: str):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def train(precision: str, length: int, steps: int) -> float:
        model.train()
        x, y = batch(args.train_batch, length), torch.randint(0, 2, (args.train_batch,))
        start = time.perf_counter()
        for _ in range(steps):
            with autocast(precision):
                logits = model(x)["logits"]
            F.cross_entropy(logits.float(), y).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return (time.perf_counter() - start) / steps

    def predict(precision: str, length: int, steps: int) -> float:
        model.eval()
        x = batch(args.predict_batch, length)
        start = time.perf_counter()
        with torch.inference_mode(), autocast(precision):
            for _ in range(steps):
                model(x)
        return (time.perf_counter() - start) / steps

    rows = []
    for kind, run, rows_per_batch in (
        ("train step", train, args.train_batch),
        ("predict forward", predict, args.predict_batch),
    ):
        for length in (int(x) for x in args.lengths.split(",")):
            run("fp32", length, 1), run("bf16", length, 1)  # warm-up
            seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
            for r in range(args.rounds):
                for precision in ("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32"):
                    seconds[precision].append(run(precision, length, args.steps))
            ratios = [a / b for a, b in zip(seconds["fp32"], seconds["bf16"])]
            row = {
                "kind": kind,
                "batch": rows_per_batch,
                "length": length,
                "fp32_s": round(statistics.median(seconds["fp32"]), 4),
                "bf16_s": round(statistics.median(seconds["bf16"]), 4),
                "speedup": round(statistics.median(ratios), 2),
                "speedup_min": round(min(ratios), 2),
                "speedup_max": round(max(ratios), 2),
            }
            rows.append(row)
            print(
                f"{kind}, batch {rows_per_batch} × {length} tokens: fp32 {row['fp32_s']} s, "
                f"bf16 {row['bf16_s']} s, bf16 {row['speedup']}× "
                f"({row['speedup_min']}–{row['speedup_max']})",
                flush=True,
            )
    emit({"threads": torch.get_num_threads(), "rounds": args.rounds, "rows": rows})


if __name__ == "__main__":
    main()
