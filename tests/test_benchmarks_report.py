"""benchmarks/run_all.py turns results into docs/benchmarks.md: FLOP counts, medians and
spreads of alternating rounds, both anchor settings with the targets judged against the
best one, and no MFU above 100 % ever printed (on made-up results; no benchmark runs here)."""

from __future__ import annotations

import re
import subprocess
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
INFO = {
    "cpu": "Test CPU", "logical_cpus": 2, "usable_cpus": 2, "torch_threads": 2,
    "memory_gb": 8, "native_bf16": True, "gpu": None, "simd": ["avx512_bf16", "amx_bf16"],
    "python": "3.11", "versions": {"torch": "2"}, "env": {}, "load_average": [0.1, 0.2, 0.3],
}  # fmt: skip


def test_model_flops(bench):
    machine, _ = bench
    # forward: 2·P·tokens + 4·layers·hidden·L² per sequence; training 3× that
    forward = 2 * 10_000_000 * 30 + 4 * 6 * 384 * (10**2 + 20**2)
    assert machine.model_flops([10, 20], SHAPE, training=False) == forward
    assert machine.model_flops([10, 20], SHAPE, training=True) == 3 * forward


def test_first_token_flops_drop_the_last_layers_other_rows(bench):
    machine, _ = bench
    h, ffn = 384, 4 * 384
    full = machine.model_flops([10, 20], SHAPE, training=False)
    first = machine.model_flops([10, 20], SHAPE, training=False, first_token=True)
    # the last layer's Q, attention output and FFN (2h² + 2h·ffn weights) for L−1 rows,
    # and its attention for L² − L pairs, are not computed
    saved = sum(2 * (2 * h * h + 2 * h * ffn) * (n - 1) + 4 * h * (n * n - n) for n in (10, 20))
    assert full - first == saved > 0
    # a one-token sequence has nothing to skip
    assert machine.model_flops([1], SHAPE, training=True, first_token=True) == (
        machine.model_flops([1], SHAPE, training=True)
    )
    # which sides ran that path: tunekit's classify/sts sides, not "all positions", not the
    # Trainer, not token tagging
    run_all = bench[1]
    assert run_all.first_token_side("classify", "tunekit fp32")
    assert run_all.first_token_side("sts", "tunekit bf16")
    assert not run_all.first_token_side("classify", "tunekit all positions fp32")
    assert not run_all.first_token_side("classify", "hf grouped fp32")
    assert not run_all.first_token_side("ner", "tunekit fp32")


def test_executed_flops_count_padding(bench):
    machine, _ = bench
    # a batch of 2 rows padded to 20 executes two 20-token sequences, whatever their lengths
    assert machine.executed_flops([[2, 20]], SHAPE, training=True) == machine.model_flops(
        [20, 20], SHAPE, training=True
    )
    assert machine.executed_flops([[2, 20]], SHAPE, training=False) > machine.model_flops(
        [10, 20], SHAPE, training=False
    )


def test_mfu_above_100_percent_is_refused(bench):
    machine, run_all = bench
    assert machine.mfu(50e9, 1.0, 100e9) == pytest.approx(0.5)
    with pytest.raises(machine.CeilingError, match="ceiling"):
        machine.mfu(150e9, 1.0, 100e9)
    assert run_all.mfu_cell(150e9, 1.0, {"fp32": 100e9}, "fp32") == "**ceiling wrong**"
    assert run_all.mfu_cell(50e9, 1.0, {"fp32": 100e9}, "fp32") == "50.0 %"


def test_spread_and_paired_ratios(bench):
    machine, run_all = bench
    s = machine.spread([3.0, 1.0, 2.0])
    assert (s["median"], s["min"], s["max"], s["mean"], s["std"]) == (2.0, 1.0, 3.0, 2.0, 1.0)
    slow = [{"fit_seconds": 20.0}, {"fit_seconds": 30.0}, {"fit_seconds": 24.0}]
    fast = [{"fit_seconds": 10.0}, {"fit_seconds": 10.0}, {"fit_seconds": 16.0}]
    r = run_all.paired_ratios(slow, fast, "fit_seconds")  # per round: 2.0, 3.0, 1.5
    assert (r["median"], r["min"], r["max"]) == (2.0, 1.5, 3.0)


def test_equal_quality_is_within_the_spread(bench):
    machine, run_all = bench
    theirs = machine.spread([0.80, 0.82, 0.78])  # mean 0.80, std 0.02
    assert run_all.equal_quality(machine.spread([0.77, 0.79, 0.78]), theirs)  # -0.02 ≤ 0.03
    assert not run_all.equal_quality(machine.spread([0.70, 0.70, 0.70]), theirs)


def train_run(seconds, metric, precision="fp32", shapes=((32, 40), (32, 40), (32, 40), (4, 40))):
    return {
        "fit_seconds": seconds, "loop_seconds": seconds - 1, "metric": metric,
        "metric_name": "accuracy", "precision": precision, "samples": 100, "peak_rss_mb": 1000,
        "batch_shapes": [list(s) for s in shapes],
    }  # fmt: skip


def infer_run(seconds, labels, precision="fp32"):
    return {"seconds": seconds, "labels": labels, "precision": precision,
            "batch_shapes": [[4, 50]]}  # fmt: skip


def fake_results(fp32_peak_gflops=1000.0):
    return {
        "shape": SHAPE,
        "repeats": 3,
        "ceiling": {
            "shapes": {"fp32": {"mm 1024": fp32_peak_gflops}, "bf16": {"mm 1024": 2000.0}},
            "fp32_peak_gflops": fp32_peak_gflops,
            "bf16_peak_gflops": 2000.0,
            "rounds": 2,
            "seconds": 1.0,
            "threads": 2,
        },  # fmt: skip
        "train": {
            "classify": {
                "sizes": dict(
                    train=100, test=50, epochs=1, batch_size=32, max_length=128, learning_rate=5e-5
                ),  # fmt: skip
                "lengths": [30] * 100,
                "probes": {},
                "runs": {
                    "tunekit fp32": [
                        train_run(10.0, 0.80),
                        train_run(10.0, 0.81),
                        train_run(10.0, 0.79),
                    ],
                    # the default anchor is twice as slow; the grouped one only 1.2×
                    "hf default fp32": [
                        train_run(20.0, 0.80),
                        train_run(20.0, 0.80),
                        train_run(20.0, 0.80),
                    ],
                    "hf grouped fp32": [
                        train_run(12.0, 0.80),
                        train_run(12.0, 0.81),
                        train_run(12.0, 0.79),
                    ],
                },  # fmt: skip
            }
        },
        "inference": {
            "sizes": dict(texts=4, batch_size=64, max_length=128),
            "texts": 4,
            "lengths": {"min": 5, "mean": 25.0, "max": 50},
            "lengths_list_for_flops": [5, 20, 25, 50],
            "runs": {
                "tunekit fp32": [infer_run(1.0, list("abab"))] * 3,
                "pipeline default": [infer_run(3.0, list("abab"))] * 3,
                "pipeline sorted": [infer_run(1.2, list("abab"))] * 3,
            },
        },
    }


def test_report_judges_targets_against_the_best_anchor(bench):
    _, run_all = bench
    text = run_all.report(fake_results(), INFO, "python benchmarks/run_all.py", False, {"train": 1})
    # both anchor settings have their rows; the best is named and the target judged on it
    for row in ("| hf default fp32 |", "| hf grouped fp32 |", "| pipeline default |",
                "| pipeline sorted |"):  # fmt: skip
        assert row in text
    assert "tunekit **1.20× (1.20–1.20)** the best Trainer (`hf grouped fp32`)" in text
    assert "2.00× (2.00–2.00) the default (`hf default fp32`)" in text
    assert (
        "| classify fine-tune throughput vs Trainer (fp32) | ≥ 1.3× the best | 2.00× (2.00–2.00) "
        "| 1.20× (1.20–1.20) | **missed** |" in text
    )
    assert "tunekit **1.20× (1.20–1.20)** the best pipeline (`pipeline sorted`)" in text
    assert "| inference vs pipeline (fp32) |" in text and "4/4 equal | **missed** |" in text
    # quality: mean ± std over the seeds, equal within the spread
    assert "0.8000 ± 0.0100" in text and "equal within the spread" in text
    assert "| classify accuracy vs Trainer |" in text
    # padding efficiency: 100 rows of 30 real tokens executed at a padded length of 40
    assert "| 75.0 % |" in text
    assert "Test CPU" in text and "amx_bf16" in text and "quick sizes" not in text


def test_report_never_prints_an_mfu_above_100_percent(bench):
    machine, run_all = bench
    # a ceiling of 1 GFLOP/s is far below what these runs reached: every MFU would be > 100 %
    text = run_all.report(fake_results(fp32_peak_gflops=1.0), INFO, "cmd", True, {})
    assert "**ceiling wrong**" in text
    percentages = [float(x) for x in re.findall(r"(\d+(?:\.\d+)?) %", text)]
    assert percentages and max(percentages) <= 100.0
    # with an honest ceiling the same cells are numbers
    fine = run_all.report(fake_results(), INFO, "cmd", True, {})
    assert "ceiling wrong" not in fine
    # loop 9 s at the 1000 GFLOP/s peak; tunekit's classify side runs the CLS-only last layer,
    # so its FLOPs are counted for that path, the Trainer's for the full model
    done = machine.model_flops([30] * 100, SHAPE, training=True, first_token=True)
    assert f"{100 * done / 9.0 / 1000e9:.1f} %" in fine


def test_run_all_refuses_fewer_than_three_rounds():
    done = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--repeats", "2", "--out", "/dev/null"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "at least 3" in done.stderr


def test_merge_results_adds_sides_from_a_later_run(bench):
    _, run_all = bench
    first = fake_results()
    first["seconds"] = {"train": 10.0}
    later = {
        "seconds": {"train": 5.0},
        "train": {
            "classify": {
                "runs": {"tunekit bf16": [train_run(5.0, 0.80, precision="bf16")] * 3},
                "probes": {},
            }
        },
    }
    merged = run_all.merge_results([first, later])
    runs = merged["train"]["classify"]["runs"]
    assert set(runs) == {"tunekit fp32", "hf default fp32", "hf grouped fp32", "tunekit bf16"}
    assert merged["seconds"]["train"] == 15.0
    assert "tunekit bf16" not in first["train"]["classify"]["runs"]  # inputs left alone
    text = run_all.report(merged, INFO, "cmd", True, merged["seconds"])
    assert "technique, bf16 (tunekit bf16 vs fp32): 2.00× (2.00–2.00)" in text


def test_strategies_show_where_lora_memory_goes(bench):
    _, run_all = bench

    def row(name, rss):
        return {"run": name, "accuracy": 0.7, "train_seconds": 1.0, "trainable_params": 1,
                "trainable_percent": 1.0, "peak_rss_mb": rss, "bundle_mb": 1.0}  # fmt: skip

    strategies = {
        "settings": dict(train=10, test=5, epochs=1, batch_size=8, max_length=32),
        "results": [
            row("full", 1000.0),
            row("lora r=8", 900.0),
            row("frozen mlp 512 (cached)", 500.0),
        ],  # fmt: skip
    }
    text = run_all.report({"strategies": strategies, "shape": SHAPE}, INFO, "cmd", True, {})
    assert "peaks at 500 MB, 0.50× full fine-tuning's: the floor" in text
    assert "LoRA adds 400 MB above it" in text and "full fine-tuning 500 MB" in text
    assert "| LoRA peak RSS vs full | ≤ 0.6× | – | 0.90× | **missed** |" in text


def test_grouping_note_only_where_the_trainer_cannot_group(bench):
    _, run_all = bench
    # 160 rows at batch 32: mega-batches of min(160 // 128, 50) = 1 batch, no grouping
    assert "single batch" in run_all.grouping_note({"train": 160, "batch_size": 32})[0]
    assert run_all.grouping_note({"train": 2000, "batch_size": 32}) == []  # 15 batches
    results = fake_results()  # 100 rows at batch 32: the page says so under the table intro
    assert "sorts mega-batches of a single batch" in run_all.report(results, INFO, "c", True, {})


def test_techniques_table_has_the_precision_rows_on_and_off(bench):
    _, run_all = bench
    results = fake_results()
    runs = results["train"]["classify"]["runs"]
    # bf16 halves tunekit's time at the same accuracy; the Trainer at bf16 (bf16=True) takes 8 s
    runs["tunekit bf16"] = [train_run(5.0, m, precision="bf16") for m in (0.80, 0.81, 0.79)]
    runs["hf grouped bf16"] = [train_run(8.0, 0.80, precision="bf16")] * 3
    runs["hf default bf16"] = [train_run(16.0, 0.80, precision="bf16")] * 3
    inference = results["inference"]["runs"]
    inference["tunekit bf16"] = [infer_run(0.5, list("abaa"), precision="bf16")] * 3
    text = run_all.report(results, INFO, "cmd", True, {})
    assert "## Techniques, on and off" in text
    # training: 2× faster than fp32, accuracy equal, 1.6× the Trainer at the same precision
    assert (
        "| precision: bf16 autocast (vs fp32) | classify | tunekit fp32 | 10.0 (10.0–10.0) | "
        "tunekit bf16 | 5.0 (5.0–5.0) | 2.00× (2.00–2.00) | "
        "accuracy 0.8000 ± 0.0100 → 0.8000 ± 0.0100: equal | "
        "1.60× (1.60–1.60) `hf grouped bf16` |" in text
    )
    # predict: 2× faster, 3 of 4 labels as fp32's, 2.4× the length-sorted pipeline (fp32)
    assert (
        "| precision: bf16 predict (vs fp32) | predict | tunekit fp32 | 1.0 (1.0–1.0) | "
        "tunekit bf16 | 0.5 (0.5–0.5) | 2.00× (2.00–2.00) | labels 3 / 4 equal | "
        "2.40× (2.40–2.40) `pipeline sorted` |" in text
    )
    # a lower accuracy is flagged; a technique not measured has no row
    runs["tunekit bf16"] = [train_run(5.0, 0.60, precision="bf16")] * 3
    text = run_all.report(results, INFO, "cmd", True, {})
    assert "→ 0.6000 ± 0.0000: **lower**" in text and "| length grouping |" not in text
    assert "## Techniques" not in run_all.report(fake_results(), INFO, "cmd", True, {})


def test_first_token_technique_rows_compare_on_with_off(bench):
    _, run_all = bench
    assert "tunekit all positions fp32" in run_all.train_sides("classify", False)
    assert "tunekit all positions fp32" not in run_all.train_sides("ner", False)  # token head
    results = fake_results()
    results["train"]["classify"]["runs"]["tunekit all positions fp32"] = [
        train_run(11.0, 0.80), train_run(12.0, 0.80), train_run(11.5, 0.81),
    ]  # fmt: skip
    results["inference"]["runs"]["tunekit all positions fp32"] = [infer_run(1.1, list("abab"))] * 3
    text = run_all.report(results, INFO, "cmd", True, {})
    # per round 11/10, 12/10, 11.5/10: median 1.15
    assert (
        "- technique, last layer for the CLS row only (tunekit on vs off): 1.15× (1.10–1.20) "
        "fit time, accuracy 0.8000 ± 0.0100 vs 0.8033 ± 0.0058" in text
    )
    assert "- technique, last layer for the CLS row only (on vs off): 1.10× (1.10–1.10)" in text
    assert "| tunekit all positions fp32 |" in text


def packing_run(padded_s, packed_s, loss_delta=0.0):
    def mode(seconds, eff):
        return {"seconds": seconds, "padding_efficiency": eff, "speedup_total": padded_s / seconds}

    return {
        "first_batch_loss": {"padded": 0.7, "packed longest": 0.7, "packed 128": 0.7 + loss_delta},
        "modes": {"padded": mode(padded_s, 0.88), "packed longest": mode(padded_s, 0.89),
                  "packed 128": mode(packed_s, 0.95)},
    }  # fmt: skip


def test_packing_rows_say_whether_it_pays(bench):
    _, run_all = bench
    assert "packing" in run_all.SECTIONS
    slower = {"ner": [packing_run(10.0, 12.5), packing_run(10.0, 11.0), packing_run(10.0, 10.0)]}
    text = run_all.report({"packing": slower, "shape": SHAPE}, INFO, "cmd", True, {})
    assert "| ner | packed 128 | 11.0 (10.0–12.5) | 95.0 % | 0.91× (0.80–1.00) | 0.0e+00 |" in text
    assert (
        "it does not pay here (not faster in every round), so tunekit has no packing option" in text
    )
    faster = {"ner": [packing_run(10.0, 8.0, 1e-7)] * 3}
    text = run_all.report({"packing": faster, "shape": SHAPE}, INFO, "cmd", True, {})
    assert (
        "best `packed 128` on ner, 1.25× (1.25–1.25) the padded steps: it pays here (faster in every round)"
        in text
    )
    assert "| 1.0e-07 |" in text
