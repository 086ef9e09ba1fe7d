"""This machine's matrix-multiplication ceiling, fp32 and bf16, measured now.

The ceiling divides the model FLOPs of training and inference into an MFU, so it must not
be below what the model itself reaches. It is the best FLOP/s over

- square matmuls (1024³, 2048³), and
- the products MiniLM itself computes, as it computes them: ``F.linear`` with bias
  (``addmm``) on ``[tokens × 384] @ [384 × 384]`` (query, key, value, attention output),
  ``[tokens × 384] @ [384 × 1536]`` and ``[tokens × 1536] @ [1536 × 384]`` (the
  feed-forward), at 4096 and 1024 tokens, and attention's batched matmuls
  ``[B·heads, L, 32] @ [B·heads, 32, L]`` and ``[B·heads, L, L] @ [B·heads, L, 32]``,

each timed for ``--seconds`` in each of ``--rounds`` rounds (the best round kept: a
loaded machine lowers a round, never raises it), with the thread count the other
benchmarks use (``tunekit.hardware.configure_threads``).

    python benchmarks/bench_ceiling.py [--seconds 2.0 --rounds 2]
"""

from __future__ import annotations

import argparse
import time

from machine import emit

#: name → (kind, dims): "mm" m×k @ k×n; "linear" F.linear([m, k], W[n, k], b[n]);
#: "bmm" [b, m, k] @ [b, k, n]
SHAPES = {
    "mm 1024x1024x1024": ("mm", (1024, 1024, 1024)),
    "mm 2048x2048x2048": ("mm", (2048, 2048, 2048)),
    "linear 4096x384x384": ("linear", (4096, 384, 384)),
    "linear 4096x384x1536": ("linear", (4096, 384, 1536)),
    "linear 4096x1536x384": ("linear", (4096, 1536, 384)),
    "linear 1024x384x1536": ("linear", (1024, 384, 1536)),
    "linear 1024x1536x384": ("linear", (1024, 1536, 384)),
    "bmm qk 384x128x32x128": ("bmm", (384, 128, 32, 128)),
    "bmm av 384x128x128x32": ("bmm", (384, 128, 128, 32)),
}


def operands(kind: str, dims: tuple[int, ...], dtype):
    import torch
    import torch.nn.functional as F

    if kind == "mm":
        m, k, n = dims
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        return (lambda: a @ b), 2.0 * m * k * n
    if kind == "linear":
        m, k, n = dims
        x, w, bias = (
            torch.randn(m, k).to(dtype),
            torch.randn(n, k).to(dtype),
            torch.randn(n).to(dtype),
        )
        return (lambda: F.linear(x, w, bias)), 2.0 * m * k * n
    batch, m, k, n = dims
    a, b = torch.randn(batch, m, k).to(dtype), torch.randn(batch, k, n).to(dtype)
    return (lambda: torch.bmm(a, b)), 2.0 * batch * m * k * n


def flops_per_second(kind: str, dims: tuple[int, ...], dtype, seconds: float) -> float:
    call, flops = operands(kind, dims, dtype)
    for _ in range(3):
        call()
    count, start = 0, time.perf_counter()
    while True:
        call()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and count >= 5:
            break
    return flops * count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per shape, dtype and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each shape's best is kept")
    args = parser.parse_args()
    import torch

    from tunekit.hardware import configure_threads

    configure_threads()
    result = {
        "threads": torch.get_num_threads(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "shapes": {},
    }
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = dict.fromkeys(SHAPES, 0.0)
        with torch.inference_mode():
            for _ in range(args.rounds):
                for shape, (kind, dims) in SHAPES.items():
                    rate = flops_per_second(kind, dims, dtype, args.seconds)
                    best[shape] = max(best[shape], rate)
        result["shapes"][name] = {k: round(v / 1e9, 1) for k, v in best.items()}
        result[f"{name}_peak_gflops"] = round(max(best.values()) / 1e9, 1)
    emit(result)


if __name__ == "__main__":
    main()
