"""benchmarks/run_all.py turns results into docs/benchmarks.md: the FLOP count, the ratios
and the target verdicts are computed right (on made-up results; no benchmark runs here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        import machine
        import run_all

        yield machine, run_all
    finally:
        sys.path.remove(str(BENCH))


SHAPE = {"params": 22_700_000, "matmul_params": 10_000_000, "layers": 6, "hidden": 384}


def test_model_flops(bench):
    machine, _ = bench
    # forward: 2·P·tokens + 4·layers·hidden·L² per sequence; training 3× that
    forward = 2 * 10_000_000 * 30 + 4 * 6 * 384 * (10**2 + 20**2)
    assert machine.model_flops([10, 20], SHAPE, training=False) == forward
    assert machine.model_flops([10, 20], SHAPE, training=True) == 3 * forward


def fake_results():
    def train_run(precision, loop, acc, rss):
        return {
            "loop_seconds": loop,
            "end_to_end_seconds": loop + 2,
            "samples_per_s": round(100 / loop, 2),
            "accuracy": acc,
            "peak_rss_mb": rss,
            "precision": precision,
        }

    return {
        "sizes": {"train": dict(train=100, test=50, epochs=1, batch_size=32, max_length=128)},
        "shape": SHAPE,
        "ceiling": {
            "shapes": {"fp32": {"1024": 100.0}, "bf16": {"1024": 200.0}},
            "fp32_peak_gflops": 100.0,
            "bf16_peak_gflops": 200.0,
        },
        "train": {
            "runs": {
                "tunekit fp32": train_run("fp32", 10.0, 0.80, 1000),
                "hf fp32": train_run("fp32", 20.0, 0.802, 1200),
                "tunekit bf16": train_run("bf16", 5.0, 0.80, 1000),
            },
            "lengths": [30] * 100,
        },
        "inference": {
            "texts": 4, "tokens": 100, "lengths": {"min": 5, "mean": 25.0, "max": 50},
            "batch_size": 64, "max_length": 128, "tunekit_seconds": 1.0, "pipeline_seconds": 1.2,
            "tunekit_texts_per_s": 4.0, "pipeline_texts_per_s": 3.3, "speedup": 1.2,
            "labels_agree": 4, "lengths_list_for_flops": [5, 20, 25, 50],
        },
    }  # fmt: skip


def test_report_ratios_and_targets(bench):
    machine, run_all = bench
    info = {
        "cpu": "Test CPU", "logical_cpus": 2, "usable_cpus": 2, "torch_threads": 2,
        "memory_gb": 8, "native_bf16": True, "gpu": None, "simd": ["avx512_bf16"],
        "python": "3.11", "versions": {"torch": "2"}, "env": {},
    }  # fmt: skip
    text = run_all.report(fake_results(), info, "python benchmarks/run_all.py", False, {"train": 1})
    assert "fp32: tunekit **2.00×** the Trainer's samples/s" in text
    assert "| full fine-tune throughput vs Trainer (fp32) | ≥ 1.5× | 2.00× | met |" in text
    assert "| accuracy vs Trainer | within 0.5 point (or better) | -0.2 points | met |" in text
    assert (
        "| inference vs pipeline | ≥ 1.3×, identical labels | 1.2×, 4/4 equal | **missed** |"
        in text
    )
    # MFU: 6·P·tokens (+attention) over 5 s at the 200 GFLOP/s bf16 peak
    flops = machine.model_flops([30] * 100, SHAPE, training=True)
    assert f"{100 * flops / 5.0 / 200e9:.1f} %" in text
    assert "Test CPU" in text and "quick sizes" not in text
