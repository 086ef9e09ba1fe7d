"""This machine's matrix-multiplication peak, fp32 and bf16, measured now.

The best FLOP/s of square matmuls (1024, 2048) and of the shapes MiniLM's layers multiply
(tokens × 384 by 384 × 1536 and back), with the thread count the other benchmarks use.
``run_all.py`` divides the model FLOPs of training and inference by this to get the
model FLOPs utilisation (MFU).

    python benchmarks/bench_ceiling.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import time

from machine import emit

SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 384, 1536), (4096, 1536, 384)]


def flops_per_second(m: int, k: int, n: int, dtype, seconds: float) -> float:
    import torch

    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    for _ in range(2):
        a @ b
    count, start = 0, time.perf_counter()
    while True:
        a @ b
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and count >= 3:
            break
    return 2.0 * m * k * n * count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per shape and dtype")
    args = parser.parse_args()
    import torch

    from tunekit.hardware import configure_threads

    configure_threads()
    result = {"threads": torch.get_num_threads(), "shapes": {}}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rates = {
            "x".join(map(str, shape)): flops_per_second(*shape, dtype, args.seconds)
            for shape in SHAPES
        }
        result["shapes"][name] = {k: round(v / 1e9, 1) for k, v in rates.items()}
        result[f"{name}_peak_gflops"] = round(max(rates.values()) / 1e9, 1)
    emit(result)


if __name__ == "__main__":
    main()
