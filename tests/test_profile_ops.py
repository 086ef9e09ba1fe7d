"""benchmarks/profile_ops.py: operators sorted into categories, and the time outside any
operator counted as the Python / autograd rest (on made-up profiler events; no profiling
runs here)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def profile_ops():
    sys.path.insert(0, str(BENCH))
    try:
        import profile_ops

        yield profile_ops
    finally:
        sys.path.remove(str(BENCH))


def test_categories_of_operators(profile_ops):
    expected = {
        "aten::addmm": "GEMM",
        "aten::mm": "GEMM",
        "aten::bmm": "GEMM",
        "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
        "aten::_softmax": "attention",
        "aten::bernoulli_": "dropout",
        "aten::native_layer_norm_backward": "layer norm",
        "aten::gelu": "GELU / tanh",
        "aten::embedding_dense_backward": "embedding",
        "aten::_fused_adamw_": "optimizer + grad clipping",
        "aten::linalg_vector_norm": "optimizer + grad clipping",
        "aten::copy_": "allocation / fill / copy",
        "aten::fill_": "allocation / fill / copy",
        "aten::add_": "other elementwise",
        "aten::where": "other elementwise",
        "aten::bitwise_and": "other ops",
    }
    assert {op: profile_ops.category(op) for op in expected} == expected


def test_rest_is_wall_time_outside_operators(profile_ops):
    events = [
        SimpleNamespace(key="aten::addmm", self_cpu_time_total=6_000),  # µs
        SimpleNamespace(key="aten::mm", self_cpu_time_total=2_000),
        SimpleNamespace(key="aten::copy_", self_cpu_time_total=1_000),
        SimpleNamespace(key="ProfilerStep#1", self_cpu_time_total=500),  # a mark, not an op
    ]
    prof = SimpleNamespace(key_averages=lambda: events)
    rows = {r["category"]: r for r in profile_ops.categories(prof, wall_ms=10.0)}
    assert rows["GEMM"]["ms"] == 8.0 and rows["GEMM"]["share"] == 0.8
    assert rows["allocation / fill / copy"]["ms"] == 1.0
    assert rows["Python / autograd / framework"]["ms"] == 1.0
    assert set(rows) == {"GEMM", "allocation / fill / copy", "Python / autograd / framework"}
