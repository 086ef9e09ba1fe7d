"""Run the performance benchmarks and rewrite ``docs/benchmarks.md``.

1. hardware ceiling: this machine's matmul peak on square and on the model's own GEMM
   shapes, fp32 and bf16, the best of several rounds (``bench_ceiling.py``);
2. training, full fine-tune: tunekit vs the transformers ``Trainer`` at its defaults and at
   its best settings (length grouping; ``torch_compile`` probed), for ``classify``
   (fp32 and, where the CPU has native bf16, bf16), token tagging (``ner``) and a pair
   task (``sts`` cross-encoder) (``bench_train.py``);
   packing: a benchmark-only prototype of sequence packing against tunekit's padded
   length-grouped batches, on and off step by step (``bench_packing.py``);
3. inference: ``run.predict`` vs the transformers ``pipeline`` in input order (its
   default) and fed length-sorted texts (its best) (``bench_inference.py``);
4. strategies: accuracy, seconds, trainable parameters, peak RSS, bundle size
   (``bench_strategies.py``);
5. scaling: training samples/s over max_length × batch size (``bench_scaling.py``);
6. profile: top ``torch.profiler`` operators of training and predict (``profile_ops.py``).

A *Techniques, on and off* table (:data:`TECHNIQUES`) puts each technique's sides side by
side: tunekit with and without it, the paired speedup, the quality off → on, and the ratio
to the best anchor at the same precision (for bf16, the Trainer with ``bf16=True``).

How it measures: every compared side runs in its own fresh process, the sides alternate
(A B C A B C …) ``--repeats`` times (≥ 3) with seed 42, 43, … (the same seed for every
side of one round); each ratio is the median of the per-round ratios with min–max, and
each quality metric is the mean ± std over the rounds' seeds. Training is timed as the
wall time of the fit call end to end on both sides (``bench_train.py`` says what that
covers). Targets are judged against the *best* anchor: the fastest of the anchor's
settings by median.

Model FLOPs: 6·params·tokens for training, 2·params·tokens for inference, plus attention,
embedding tables excluded; for a side that ran tunekit's CLS-only last layer, that layer's
skipped rows are not counted. *Useful* FLOPs count real tokens; *executed* FLOPs count every
row at its batch's padded length (the batch shapes each side's encoder saw). MFU = FLOPs /
seconds / the ceiling of the same precision; an MFU above 100 % is never printed (the
ceiling is wrong then, and the page says so).

    python benchmarks/run_all.py            # the documented sizes (~1 h on 2 idle cores)
    python benchmarks/run_all.py --quick    # small sizes, a sanity check
    python benchmarks/run_all.py --only train,inference --out /tmp/bench.md --json /tmp/bench.json
    python benchmarks/run_all.py --only ceiling,train,inference --tasks classify --train-rows 800 --texts 1500
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from machine import (
    ROOT,
    CeilingError,
    cpu_line,
    executed_flops,
    load_average,
    machine_info,
    mfu,
    minilm_shape,
    model_flops,
    run_child,
    spread,
    task_data,
    task_lengths,
)

SECTIONS = ("ceiling", "train", "packing", "inference", "strategies", "scaling", "profile")

SIZES = {
    "full": {
        "repeats": 3,
        "train": {
            "classify": dict(train=2000, test=1000, epochs=1, batch_size=32, max_length=128,
                             learning_rate=5e-5),
            "ner": dict(train=1500, test=400, epochs=2, batch_size=16, max_length=128,
                        learning_rate=1e-4),
            "sts": dict(train=595, test=105, epochs=2, batch_size=16, max_length=128,
                        learning_rate=5e-5),
        },
        "inference": dict(texts=5000, batch_size=64, max_length=128),
        "packing": {  # the training section's sizes: the same padding efficiency
            "classify": dict(train=2000, batch_size=32, max_length=128),
            "ner": dict(train=1500, batch_size=16, max_length=128),
        },
        "strategies": dict(
            train=1000, test=500, epochs=2, batch_size=32, max_length=64,
            only=["full", "lora r=8", "lora r=8 (checkpointing)", "peft ia3",
                  "frozen mlp 512 (cached)", "frozen mlp 512 (uncached)"],
        ),
        "scaling": dict(lengths="64,128,256,512", batches="8,16,32,64", seconds=1.0),
        "ceiling": dict(seconds=2.0, rounds=3),
        "profile": dict(train=160, texts=256),
    },
    "quick": {
        "repeats": 3,
        "train": {
            "classify": dict(train=160, test=200, epochs=1, batch_size=32, max_length=128,
                             learning_rate=5e-5),
            "ner": dict(train=96, test=100, epochs=1, batch_size=16, max_length=128,
                        learning_rate=1e-4),
            "sts": dict(train=32, test=105, epochs=1, batch_size=16, max_length=128,
                        learning_rate=5e-5),
        },
        "inference": dict(texts=256, batch_size=64, max_length=128),
        "packing": {
            "classify": dict(train=96, batch_size=32, max_length=128),
            "ner": dict(train=64, batch_size=16, max_length=128),
        },
        "strategies": dict(
            train=200, test=100, epochs=2, batch_size=32, max_length=64,
            only=["full", "lora r=8", "lora r=8 (checkpointing)", "frozen mlp 512 (cached)",
                  "frozen mlp 512 (uncached)"],
        ),
        "scaling": dict(lengths="64,128", batches="8,16", seconds=0.3),
        "ceiling": dict(seconds=0.5, rounds=2),
        "profile": dict(train=64, texts=64),
    },
}  # fmt: skip

TARGETS = {
    "train_speedup": 1.3,  # × the Trainer at its best settings, each task
    "inference_speedup": 1.5,  # × the length-sorted pipeline, identical labels
    "train_mfu_bf16": 0.50,  # useful FLOPs, of the bf16 ceiling, length ≤ 128
    "lora_rss_ratio": 0.6,
    "cache_speedup": 5.0,
}

#: anchors: the reference tool at its defaults and at the settings a careful user picks
ANCHOR_DEFAULT, ANCHOR_BEST = "default", "best"


def flags(options: dict) -> list[str]:
    out = []
    for key, value in options.items():
        if key == "only":
            continue
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out


# ---- sections --------------------------------------------------------------------------------


def run_ceiling(sizes) -> dict:
    return run_child("bench_ceiling.py", *flags(sizes))


def train_sides(task: str, bf16: bool) -> dict[str, list[str]]:
    """The sides of one task's comparison: name → ``bench_train.py`` arguments. Names
    are ``<tool> <setting> <precision>``; ``hf default`` is the Trainer as it comes,
    ``hf grouped`` with its length grouping; ``tunekit ungrouped`` switches tunekit's
    grouping off and ``tunekit all positions`` its first-token last layer (what each
    technique pays)."""
    sides = {}
    for p in ("fp32", "bf16") if bf16 and task == "classify" else ("fp32",):
        sides[f"tunekit {p}"] = ["--side", "tunekit", "--precision", p]
        sides[f"hf default {p}"] = ["--side", "hf", "--precision", p]
        sides[f"hf grouped {p}"] = [
            "--side", "hf", "--hf-sampling", "group_by_length", "--precision", p,
        ]  # fmt: skip
    if task == "classify":
        sides["tunekit ungrouped fp32"] = ["--side", "tunekit", "--no-grouping"]
    if task in FIRST_TOKEN_TASKS:
        sides["tunekit all positions fp32"] = ["--side", "tunekit", "--all-positions"]
    return sides


#: tasks whose benchmark head reads the CLS row only (the pooler head), where tunekit runs
#: the last layer for that row alone; ``tunekit all positions`` switches that off
FIRST_TOKEN_TASKS = ("classify", "sts")


def first_token_side(task: str, name: str) -> bool:
    """Whether side *name* of *task* ran tunekit's first-token last layer (its FLOPs are
    counted for that path: :func:`machine.model_flops` ``first_token``)."""
    return task in FIRST_TOKEN_TASKS and name.startswith("tunekit") and "all positions" not in name


#: compile probes: name → (bench_train.py arguments, the eager side it is compared with)
COMPILE_PROBES = {
    "tunekit compile fp32": (["--side", "tunekit", "--compile", "true"], "tunekit fp32"),
    "hf grouped compile fp32": (
        ["--side", "hf", "--hf-sampling", "group_by_length", "--compile", "true"],
        "hf grouped fp32",
    ),
}


#: techniques measured on and off, one row each on the page: name → (section, the side
#: without the technique, the side with it); a row appears where both sides were measured
TECHNIQUES = {
    "length grouping": ("train", "tunekit ungrouped fp32", "tunekit fp32"),
    "precision: bf16 autocast (vs fp32)": ("train", "tunekit fp32", "tunekit bf16"),
    "precision: bf16 predict (vs fp32)": ("inference", "tunekit fp32", "tunekit bf16"),
}


def run_train(
    sizes, repeats: int, bf16: bool, bundle: Path, log, save=None, keep=None, probes=True
) -> dict:
    """Every task's comparison; *save* (if given) is called with the results so far after
    each task, so that a long run interrupted keeps what it measured. *keep*: only the
    sides of these names (all if None); *probes*: run the compile probes."""
    out, probes_wanted = {}, probes
    for task, size in sizes.items():
        sides = {k: v for k, v in train_sides(task, bf16).items() if keep is None or k in keep}
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for rep in range(repeats):
            for name, args in sides.items():
                extra = ["--seed", str(42 + rep)]
                if task == "classify" and name == "tunekit fp32" and rep == 0:
                    extra += ["--save", str(bundle)]  # the inference section's model
                r = run_child("bench_train.py", "--task", task, *args, *flags(size), *extra)
                runs[name].append(r)
                log(f"{task} {name} round {rep + 1}: fit {r['fit_seconds']} s, "
                    f"{r['metric_name']} {r['metric']}")  # fmt: skip
        probes = {}
        if task == "classify" and probes_wanted:
            for name, (args, eager) in COMPILE_PROBES.items():
                if eager not in runs:
                    continue
                eager_s = spread([r["fit_seconds"] for r in runs[eager]])["median"]
                limit = 2 * eager_s + 30  # a compiled run slower than this cannot pay
                try:
                    r = run_child(
                        "bench_train.py", "--task", task, *args, *flags(size), "--seed", "42",
                        timeout=limit,
                    )  # fmt: skip
                    probes[name] = {"eager": eager, "eager_median": eager_s, **r}
                    if r["fit_seconds"] < eager_s:  # it pays: measure it like the others
                        runs[name] = [r] + [
                            run_child(
                                "bench_train.py",
                                "--task",
                                task,
                                *args,
                                *flags(size),
                                "--seed",
                                str(42 + rep),
                            )  # fmt: skip
                            for rep in range(1, repeats)
                        ]
                except subprocess.TimeoutExpired:
                    probes[name] = {"eager": eager, "eager_median": eager_s, "stopped_after": limit}
                log(f"{task} probe {name}: {probes[name].get('fit_seconds', 'stopped')}")
        train, _ = task_data(task, size["train"], size["test"])
        lengths = task_lengths(task, train, size["max_length"]) * size["epochs"]
        out[task] = {"sizes": size, "runs": runs, "probes": probes, "lengths": lengths}
        if save:
            save(out)
    return out


def run_inference(sizes, repeats: int, bf16: bool, bundle: Path, log, keep=None) -> dict:
    sides = {
        "tunekit fp32": ["--side", "tunekit"],
        "pipeline default": ["--side", "pipeline"],
        "pipeline sorted": ["--side", "pipeline-sorted"],
    }
    if bf16:
        sides["tunekit bf16"] = ["--side", "tunekit", "--precision", "bf16"]
    sides["tunekit all positions fp32"] = ["--side", "tunekit", "--all-positions"]
    sides = {k: v for k, v in sides.items() if keep is None or k in keep}
    base = flags(sizes) + (["--bundle", str(bundle)] if bundle.is_dir() else [])
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for rep in range(repeats):
        for name, args in sides.items():
            r = run_child("bench_inference.py", *args, *base)
            runs[name].append(r)
            log(f"inference {name} round {rep + 1}: {r['seconds']} s")
    first = runs["pipeline default"][0]
    return {
        "sizes": sizes,
        "runs": runs,
        "texts": first["texts"],
        "lengths": first["lengths"],
        "lengths_list_for_flops": first["lengths_list_for_flops"],
    }


def run_packing(sizes, repeats: int, log) -> dict:
    """The packing prototype (``bench_packing.py``), each task *repeats* times in fresh
    processes with seeds 42, 43, …; every run times its modes step by step alternately."""
    out = {}
    for task, size in sizes.items():
        out[task] = []
        for rep in range(repeats):
            r = run_child("bench_packing.py", "--task", task, *flags(size), "--seed", str(42 + rep))
            out[task].append(r)
            log(f"packing {task} round {rep + 1}: " + ", ".join(
                f"{m} {v['speedup_total']}×" for m, v in r["modes"].items()))  # fmt: skip
    return out


def run_strategies(sizes) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strategies.json"
        cmd = [
            sys.executable, str(ROOT / "benchmarks" / "bench_strategies.py"), *flags(sizes),
            "--only", ",".join(sizes["only"]), "--json", str(out),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode or not out.is_file():
            raise RuntimeError(f"bench_strategies.py failed:\n{done.stderr[-4000:]}")
        return json.loads(out.read_text())


def run_scaling(sizes, precision: str) -> dict:
    return run_child("bench_scaling.py", *flags(sizes), "--precision", precision)


def run_profile(sizes, precision: str) -> dict:
    return run_child("profile_ops.py", *flags(sizes), "--precision", precision, "--json")


# ---- report: statistics ------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def mfu_cell(flops: float, seconds: float, peak: dict, precision: str) -> str:
    """An MFU as a percentage, or ``ceiling wrong`` where it would exceed 100 % (the
    ceiling measured is then below what the model reached, and no figure is printed)."""
    if precision not in peak or not seconds:
        return "–"
    try:
        return pct(mfu(flops, seconds, peak[precision]))
    except CeilingError:
        return "**ceiling wrong**"


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def span(stats: dict, digits: int = 2, unit: str = "") -> str:
    """``median (min–max)`` of a :func:`machine.spread`."""
    f = f"{{:.{digits}f}}"
    return f"{f.format(stats['median'])}{unit} ({f.format(stats['min'])}–{f.format(stats['max'])})"


def mean_std(stats: dict, digits: int = 4) -> str:
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def paired_ratios(slow: list[dict], fast: list[dict], key: str) -> dict:
    """Per-round ratios ``slow[i][key] / fast[i][key]`` of two alternating sides (round
    *i* of both ran back to back), as a :func:`machine.spread`."""
    pairs = list(zip(slow, fast))
    if not pairs:
        raise ValueError("no rounds to compare")
    return spread([a[key] / b[key] for a, b in pairs])


def anchors(runs: dict[str, list[dict]], prefix: str, precision: str) -> dict[str, str]:
    """The anchor's default side and its best side (the fastest by median, of every
    measured setting of the anchor at *precision*): ``{"default": name, "best": name}``."""
    mine = [
        name
        for name in runs
        if name.startswith(prefix + " ") and name.endswith(" " + precision) and runs[name]
    ]
    if not mine:
        return {}
    default = f"{prefix} default {precision}"
    best = min(mine, key=lambda n: spread([r[_clock(r)] for r in runs[n]])["median"])
    return {ANCHOR_DEFAULT: default if default in mine else best, ANCHOR_BEST: best}


def _clock(run: dict) -> str:
    return "fit_seconds" if "fit_seconds" in run else "seconds"


def equal_quality(ours: dict, theirs: dict) -> bool:
    """Whether *ours* (a spread of a higher-is-better metric over seeds) is at least equal
    to *theirs*: its mean no lower than theirs by more than the two spreads (std) together."""
    return ours["mean"] >= theirs["mean"] - (ours["std"] + theirs["std"])


# ---- report: sections --------------------------------------------------------------------


def header(results, info, command, quick, seconds, note) -> list[str]:
    shape = results.get("shape", {})
    lines = [
        "# Benchmarks",
        "",
        "Written by `benchmarks/run_all.py`; do not edit by hand. How to read and reproduce",
        "these figures, and what tunekit does for speed: [Performance](performance.md).",
        "",
    ]
    if note:
        lines += [f"> **{note}**", ""]
    lines += [
        f"- command: `{command}`"
        + (" (**quick sizes**: a sanity check, not the reference figures)" if quick else ""),
        f"- date: {results.get('date') or datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {info['cpu']}, {info['logical_cpus']} logical CPUs ({info['usable_cpus']} usable), "
        f"torch threads {info['torch_threads']}, {info['memory_gb']} GB RAM, native bf16: "
        f"{'yes' if info['native_bf16'] else 'no'}, GPU: {info['gpu'] or 'none'}",
        f"- CPU flags: {', '.join(info['simd']) or '–'}",
        *(
            [
                f"- load average at the start (1 / 5 / 15 min): {' / '.join(map(str, info['load_average']))}"
            ]
            if info.get("load_average")
            else []
        ),
        f"- software: Python {info['python']}, "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v),
        f"- environment: {', '.join(f'{k}={v}' for k, v in info['env'].items()) or 'no thread variables set'}",
        f"- model: embedded all-MiniLM-L6-v2, {shape.get('params', 0) / 1e6:.1f} M parameters "
        f"({shape.get('matmul_params', 0) / 1e6:.1f} M outside the embedding tables, used for FLOPs)",
        f"- rounds: every compared side {results.get('repeats', 1)}× in fresh processes, alternating; "
        "ratios: median (min–max) of the per-round ratios; quality: mean ± std over the rounds' seeds",
    ]
    if seconds:
        lines.append(
            f"- wall time of this run: {sum(seconds.values()):.0f} s ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
            + ")"
        )
    return lines + [""]


def section_cpu(results, section: str, info: dict) -> list[str]:
    load = results.get("load", {}).get(section)
    where = {**info, "load_average": load} if load else info
    return [f"*{cpu_line(where)}*", ""]


def ceiling_section(ceiling, results, info) -> list[str]:
    names = list(ceiling["shapes"]["fp32"])
    lines = [
        "## Hardware ceiling",
        "",
        *section_cpu(results, "ceiling", info),
        f"Best matmul throughput (GFLOP/s) over {ceiling.get('rounds', 1)} rounds of "
        f"{ceiling.get('seconds', '?')} s per shape, {ceiling.get('threads', '?')} threads: square "
        "matmuls and the model's own products (`F.linear` with bias as its layers call it, "
        "attention's batched matmuls). The peak, the best of all, is the MFU denominator.",
        "",
        "| shape | fp32 | bf16 |",
        "|---|---|---|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {ceiling['shapes']['fp32'][name]} | {ceiling['shapes']['bf16'].get(name, '–')} |"
        )
    lines.append(
        f"| **peak** | **{ceiling['fp32_peak_gflops']}** | **{ceiling['bf16_peak_gflops']}** |"
    )
    return lines + [""]


TASK_TITLES = {
    "classify": "classify (Rotten-Tomatoes snippets, accuracy)",
    "ner": "token tagging: NER (WNUT-16 style tweets, entity F1)",
    "sts": "pair task: STS cross-encoder (Lee 2005 document pairs, Pearson)",
}


def grouping_note(sizes: dict) -> list[str]:
    """What the Trainer's length grouping can do at these sizes: its ``LengthGroupedSampler``
    sorts mega-batches of ``min(rows // (4 · batch), 50)`` batches, so on a small training
    set (fewer than 8 batches) it sorts only within each batch, which changes no padding."""
    mult = max(1, min(sizes["train"] // (4 * sizes["batch_size"]), 50))
    if mult > 1:
        return []
    return [
        f"Note: with {sizes['train']} rows at batch {sizes['batch_size']} the Trainer's "
        "`LengthGroupedSampler` sorts mega-batches of a single batch (`min(rows // (4 · batch), "
        "50)`), so its grouping changes no padding here; at larger sizes it sorts several "
        "batches at a time.",
        "",
    ]


def train_section(
    task: str, data: dict, results: dict, peak: dict, info: dict, checks
) -> list[str]:
    runs, sz, shape = data["runs"], data["sizes"], results["shape"]
    real_tokens = sum(data["lengths"])
    metric = next(r["metric_name"] for rs in runs.values() for r in rs)
    lines = [
        f"## Training: {TASK_TITLES.get(task, task)}",
        "",
        *section_cpu(results, "train", info),
        f"Full fine-tune of the embedded MiniLM: train {sz['train']}, test {sz['test']}; "
        f"{sz['epochs']} epoch(s), batch {sz['batch_size']}, lr {sz['learning_rate']}, warmup 10 %, "
        f"weight decay 0.01, max_length {sz['max_length']}; the same network on both sides. "
        "*fit s*: the wall time of the fit call end to end (tunekit `finetune()` vs the Trainer's "
        "tokenizer + model load, tokenization, `Trainer()` and `train()`); *loop s*: the training "
        f"loop alone. `hf default`: the Trainer as it comes (random batches); `hf grouped`: "
        f'`train_sampling_strategy="group_by_length"`. {real_tokens:,} real tokens.',
        "",
        *grouping_note(sz),
        f"| run | fit s | loop s | samples/s | {metric} | peak RSS MB | padding efficiency | "
        "MFU useful | MFU executed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    stats = {}
    for name, rs in runs.items():
        if not rs:
            continue
        fit = spread([r["fit_seconds"] for r in rs])
        loop = spread([r["loop_seconds"] for r in rs])
        quality = spread([r["metric"] for r in rs])
        stats[name] = {"fit": fit, "quality": quality}
        precision = rs[0]["precision"]
        shapes = next((r["batch_shapes"] for r in rs if r.get("batch_shapes")), None)
        first = first_token_side(task, name)
        if shapes:
            executed = executed_flops(shapes, shape, training=True, first_token=first)
            efficiency = real_tokens / sum(b * n for b, n in shapes)
            exec_cell = mfu_cell(executed, loop["median"], peak, precision)
        else:
            efficiency, exec_cell = None, "–"
        mine = model_flops(data["lengths"], shape, training=True, first_token=first)
        lines.append(
            f"| {name} | {span(fit)} | {span(loop)} | {rs[0]['samples'] / fit['median']:.1f} | "
            f"{mean_std(quality)} | {spread([r['peak_rss_mb'] for r in rs])['median']:.0f} | "
            f"{pct(efficiency)} | {mfu_cell(mine, loop['median'], peak, precision)} | {exec_cell} |"
        )
    lines.append("")
    for precision in ("fp32", "bf16"):
        ours = f"tunekit {precision}"
        pick = anchors(runs, "hf", precision)
        if ours not in stats or not pick:
            continue
        ratio = {k: paired_ratios(runs[v], runs[ours], "fit_seconds") for k, v in pick.items()}
        best = pick[ANCHOR_BEST]
        q_ours, q_best = stats[ours]["quality"], stats[best]["quality"]
        same = equal_quality(q_ours, q_best)
        lines.append(
            f"- {precision}: tunekit **{span(ratio[ANCHOR_BEST], unit='×')}** the best Trainer "
            f"(`{best}`), {span(ratio[ANCHOR_DEFAULT], unit='×')} the default (`{pick[ANCHOR_DEFAULT]}`); "
            f"{metric} {mean_std(q_ours)} vs {mean_std(q_best)}: "
            + ("equal within the spread" if same else "**lower beyond the spread**")
        )
        checks.append(
            (
                f"{task} fine-tune throughput vs Trainer ({precision})",
                f"≥ {TARGETS['train_speedup']}× the best",
                span(ratio[ANCHOR_DEFAULT], unit="×"),
                span(ratio[ANCHOR_BEST], unit="×"),
                ratio[ANCHOR_BEST]["median"] >= TARGETS["train_speedup"],
            )
        )
        if precision == "fp32":
            q_default = stats[pick[ANCHOR_DEFAULT]]["quality"]
            checks.append(
                (
                    f"{task} {metric} vs Trainer",
                    "equal within the seeds' spread (or better)",
                    f"{100 * (q_ours['mean'] - q_default['mean']):+.1f} points",
                    f"{100 * (q_ours['mean'] - q_best['mean']):+.1f} points "
                    f"(± {100 * (q_ours['std'] + q_best['std']):.1f})",
                    same,
                )
            )
    if (
        "tunekit ungrouped fp32" in runs
        and "tunekit fp32" in runs
        and runs["tunekit ungrouped fp32"]
    ):
        r = paired_ratios(runs["tunekit ungrouped fp32"], runs["tunekit fp32"], "fit_seconds")
        lines.append(f"- technique, length grouping (tunekit on vs off): {span(r, unit='×')}")
    if runs.get("tunekit all positions fp32") and runs.get("tunekit fp32"):
        r = paired_ratios(runs["tunekit all positions fp32"], runs["tunekit fp32"], "fit_seconds")
        q_on = stats["tunekit fp32"]["quality"]
        q_off = stats["tunekit all positions fp32"]["quality"]
        lines.append(
            f"- technique, last layer for the CLS row only (tunekit on vs off): "
            f"{span(r, unit='×')} fit time, {metric} {mean_std(q_on)} vs {mean_std(q_off)}"
        )
    if runs.get("tunekit bf16") and runs.get("tunekit fp32"):
        r = paired_ratios(runs["tunekit fp32"], runs["tunekit bf16"], "fit_seconds")
        q32, q16 = stats["tunekit fp32"]["quality"], stats["tunekit bf16"]["quality"]
        lines.append(
            f"- technique, bf16 (tunekit bf16 vs fp32): {span(r, unit='×')}, {metric} "
            f"{mean_std(q16)} vs {mean_std(q32)}: "
            + (
                "equal within the spread"
                if equal_quality(q16, q32)
                else "**lower beyond the spread**"
            )
        )
        loop16 = spread([x["loop_seconds"] for x in runs["tunekit bf16"]])["median"]
        if task == "classify":
            try:
                done = model_flops(
                    data["lengths"], shape, training=True,
                    first_token=first_token_side(task, "tunekit bf16"),
                )  # fmt: skip
                value = mfu(done, loop16, peak["bf16"]) if "bf16" in peak else None
                shown = pct(value)
                ok = None if value is None else value >= TARGETS["train_mfu_bf16"]
            except CeilingError:
                shown, ok = "ceiling wrong", None
            checks.append(
                (
                    "training MFU on useful FLOPs (bf16, length ≤ 128) of the bf16 ceiling",
                    f"≥ {pct(TARGETS['train_mfu_bf16'])}",
                    "–",
                    shown,
                    ok,
                )
            )
    for name, probe in data.get("probes", {}).items():
        if "stopped_after" in probe:
            lines.append(
                f"- probe `{name}` (one run): stopped after {probe['stopped_after']:.0f} s, the eager "
                f"`{probe['eager']}` median being {probe['eager_median']:.1f} s: compiling does not pay "
                "at this size, so it is not among the best settings"
            )
        else:
            pays = probe["fit_seconds"] < probe["eager_median"]
            lines.append(
                f"- probe `{name}` (one run): fit {probe['fit_seconds']:.1f} s vs the eager "
                f"`{probe['eager']}` median {probe['eager_median']:.1f} s: "
                + (
                    "faster, so measured in every round and a candidate best setting"
                    if pays
                    else "slower, so not among the best settings"
                )  # fmt: skip
            )
    return lines + [""]


def technique_rows(results: dict) -> list[list[str]]:
    """One row per :data:`TECHNIQUES` entry (and training task) measured on and off: the
    medians off and on, the paired speedup, the quality off → on, and tunekit with the
    technique against the best anchor at the same precision (the Trainer's ``bf16=True``
    for a bf16 side; the pipeline runs fp32 only)."""
    rows = []
    for name, (section, off, on) in TECHNIQUES.items():
        if section == "train":
            places = [(task, data["runs"]) for task, data in (results.get("train") or {}).items()]
        else:
            places = [("predict", (results.get("inference") or {}).get("runs", {}))]
        for where, runs in places:
            if not (runs.get(off) and runs.get(on)):
                continue
            clock = _clock(runs[on][0])
            speed = paired_ratios(runs[off], runs[on], clock)
            cells = [span(spread([r[clock] for r in runs[k]]), 1) for k in (off, on)]
            if section == "train":
                q_off, q_on = (spread([r["metric"] for r in runs[k]]) for k in (off, on))
                quality = f"{runs[on][0]['metric_name']} {mean_std(q_off)} → {mean_std(q_on)}: " + (
                    "equal" if equal_quality(q_on, q_off) else "**lower**"
                )
                precision = runs[on][0]["precision"]
                best = anchors(runs, "hf", precision).get(ANCHOR_BEST)
            else:
                reference = runs[off][0]["labels"]
                agree = min(sum(a == b for a, b in zip(r["labels"], reference)) for r in runs[on])
                quality = f"labels {agree} / {len(reference)} equal"
                pipes = [n for n in runs if n.startswith("pipeline ") and runs[n]]
                best = min(
                    pipes,
                    key=lambda n: spread([r["seconds"] for r in runs[n]])["median"],
                    default=None,
                )
            if best:
                vs = paired_ratios(runs[best], runs[on], clock)
                anchor = f"{span(vs, unit='×')} `{best}`"
            else:
                anchor = "–"
            rows.append(
                [name, where, off, cells[0], on, cells[1], span(speed, unit="×"), quality, anchor]
            )
    return rows


def techniques_section(results: dict) -> list[str]:
    rows = technique_rows(results)
    if not rows:
        return []
    lines = [
        "## Techniques, on and off",
        "",
        "Each technique measured with and without it on tunekit's side (the sides alternating, "
        "seconds as median (min–max)); *speedup*: the median of the per-round ratios off / on; "
        "*vs best anchor*: tunekit with the technique against the fastest anchor setting at the "
        "same precision (the Trainer with `bf16=True` for a bf16 side; the pipeline is fp32).",
        "",
        "| technique | where | off | s | on | s | speedup | quality off → on | vs best anchor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def inference_section(inf: dict, results: dict, peak: dict, info: dict, checks) -> list[str]:
    runs, shape = inf["runs"], results["shape"]
    real_tokens = sum(inf["lengths_list_for_flops"])
    reference = runs["pipeline default"][0]["labels"]
    lines = [
        "## Inference: run.predict vs transformers pipeline",
        "",
        *section_cpu(results, "inference", info),
        f"{inf['texts']:,} texts of mixed length (1–5 snippets joined; {inf['lengths']['min']}–"
        f"{inf['lengths']['max']} tokens, mean {inf['lengths']['mean']}), batch {inf['sizes']['batch_size']}, "
        f"max_length {inf['sizes']['max_length']}; the pipeline serves a `BertForSequenceClassification` "
        "holding exactly the tunekit model's weights, fp32. `pipeline default`: texts in input order; "
        "`pipeline sorted`: fed longest first, the order restored (sorting inside the clock). "
        "tunekit sorts by length itself.",
        "",
        "| side | seconds | texts/s | padding efficiency | MFU useful | MFU executed | labels equal to the pipeline's |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rs in runs.items():
        if not rs:
            continue
        secs = spread([r["seconds"] for r in rs])
        precision = rs[0]["precision"]
        shapes = rs[0].get("batch_shapes")
        first = first_token_side("classify", name)  # the inference bundle has the CLS head
        executed = (
            executed_flops(shapes, shape, training=False, first_token=first) if shapes else None
        )
        mine = model_flops(inf["lengths_list_for_flops"], shape, training=False, first_token=first)
        agree = min(sum(a == b for a, b in zip(r["labels"], reference)) for r in rs)
        lines.append(
            f"| {name} | {span(secs)} | {inf['texts'] / secs['median']:.1f} | "
            f"{pct(real_tokens / sum(b * n for b, n in shapes)) if shapes else '–'} | "
            f"{mfu_cell(mine, secs['median'], peak, precision)} | "
            f"{mfu_cell(executed, secs['median'], peak, precision) if executed else '–'} | "
            f"{agree} / {inf['texts']} |"
        )
    lines.append("")
    # the pipeline's sides carry no precision (it runs fp32): "pipeline default|sorted"
    names = [n for n in runs if n.startswith("pipeline ") and runs[n]]
    best = min(names, key=lambda n: spread([r["seconds"] for r in runs[n]])["median"])
    pick = {ANCHOR_DEFAULT: "pipeline default", ANCHOR_BEST: best}
    ours = runs["tunekit fp32"]
    ratio = {k: paired_ratios(runs[v], ours, "seconds") for k, v in pick.items()}
    agree = min(sum(a == b for a, b in zip(r["labels"], runs[best][0]["labels"])) for r in ours)
    lines.append(
        f"- fp32: tunekit **{span(ratio[ANCHOR_BEST], unit='×')}** the best pipeline (`{best}`), "
        f"{span(ratio[ANCHOR_DEFAULT], unit='×')} the default; labels {agree} / {inf['texts']} equal"
    )
    if runs.get("tunekit bf16"):
        r = paired_ratios(ours, runs["tunekit bf16"], "seconds")
        lines.append(f"- technique, bf16 predict vs fp32: {span(r, unit='×')}")
    if runs.get("tunekit all positions fp32"):
        r = paired_ratios(runs["tunekit all positions fp32"], ours, "seconds")
        lines.append(
            f"- technique, last layer for the CLS row only (on vs off): {span(r, unit='×')}"
        )
    checks.append(
        (
            "inference vs pipeline (fp32)",
            f"≥ {TARGETS['inference_speedup']}× the best, identical labels",
            span(ratio[ANCHOR_DEFAULT], unit="×"),
            f"{span(ratio[ANCHOR_BEST], unit='×')}, {agree}/{inf['texts']} equal",
            ratio[ANCHOR_BEST]["median"] >= TARGETS["inference_speedup"] and agree == inf["texts"],
        )
    )
    return lines + [""]


def packing_section(packing: dict, results: dict, info: dict) -> list[str]:
    """The packing prototype's table: per task and mode, seconds, padding efficiency and the
    speedup over padded batches (median and min–max of the rounds' whole-run ratios), and
    whether the packed loss equals the padded one."""
    lines = [
        "## Technique: sequence packing (benchmark-only prototype)",
        "",
        *section_cpu(results, "packing", info),
        "Full fine-tune steps of the embedded MiniLM on the same length-grouped batches: "
        "`padded` (tunekit today), `packed longest` (each batch's sequences packed into rows "
        "as long as its longest), `packed <C>` (rows of C tokens); packed rows carry reset "
        "position ids and a dense block-diagonal mask (SDPA on CPU has no varlen kernel, so "
        "attention runs over whole packed rows). The modes alternate step by step in one "
        "process (`bench_packing.py`); each round a fresh process and seed. *loss Δ*: the "
        "first batch's loss, same weights, dropout off, packed minus padded.",
        "",
        "| task | mode | seconds | padding efficiency | speedup vs padded | loss Δ |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for task, runs in packing.items():
        for mode in runs[0]["modes"]:
            secs = spread([r["modes"][mode]["seconds"] for r in runs])
            ratio = spread([r["modes"][mode]["speedup_total"] for r in runs])
            eff = runs[0]["modes"][mode]["padding_efficiency"]
            delta = max(abs(r["first_batch_loss"][mode] - r["first_batch_loss"]["padded"])
                        for r in runs)  # fmt: skip
            lines.append(
                f"| {task} | {mode} | {span(secs, 1)} | {pct(eff)} | {span(ratio, unit='×')} | "
                f"{delta:.1e} |"
            )
            if mode != "padded":
                verdicts.append((task, mode, ratio))
    lines.append("")
    best = max(verdicts, key=lambda v: v[2]["median"]) if verdicts else None
    if best:
        task, mode, ratio = best
        lines.append(
            f"- technique, packing: best `{mode}` on {task}, {span(ratio, unit='×')} the padded "
            "steps: "
            + (
                "it pays here (faster in every round)"
                if ratio["min"] > 1.0
                else "it does not pay here (not faster in every round), so tunekit has no "
                "packing option"
            )
        )
    return lines + [""]


def strategies_section(strat: dict, checks) -> list[str]:
    s = strat["settings"]
    lines = [
        "## Strategies",
        "",
        f"`classify` on the Rotten-Tomatoes split (train {s['train']}, test {s['test']}), {s['epochs']} epochs, "
        f"batch {s['batch_size']}, max_length {s['max_length']}, fp32; each run once, in its own process.",
        "",
        "| run | accuracy | train s | trainable params | trainable % | peak RSS MB | bundle MB |",
        "|---|---|---|---|---|---|---|",
    ]
    by_name = {}
    for r in strat["results"]:
        by_name[r["run"]] = r
        lines.append(
            f"| {r['run']} | {r['accuracy']:.4f} | {r['train_seconds']} | {r['trainable_params']:,} | "
            f"{r['trainable_percent']:.3f} | {r['peak_rss_mb']} | {r['bundle_mb']} |"
        )
    lines.append("")
    full, lora = by_name.get("full"), by_name.get("lora r=8")
    if full and lora:
        ratio = lora["peak_rss_mb"] / full["peak_rss_mb"]
        lines.append(f"- LoRA peak RSS {ratio:.2f}× full fine-tuning's")
        lean = by_name.get("lora r=8 (checkpointing)")
        if lean:
            lean_ratio = lean["peak_rss_mb"] / full["peak_rss_mb"]
            lines.append(
                f"- LoRA with `gradient_checkpointing=True`: peak RSS {lean_ratio:.2f}× full "
                f"fine-tuning's, {lean['train_seconds'] / lora['train_seconds']:.2f}× LoRA's time"
            )
            checks.append(
                (
                    "LoRA + gradient checkpointing peak RSS vs full",
                    f"≤ {TARGETS['lora_rss_ratio']}×",
                    "–",
                    f"{lean_ratio:.2f}×",
                    lean_ratio <= TARGETS["lora_rss_ratio"],
                )
            )
        checks.append(
            (
                "LoRA peak RSS vs full",
                f"≤ {TARGETS['lora_rss_ratio']}×",
                "–",
                f"{ratio:.2f}×",
                ratio <= TARGETS["lora_rss_ratio"],
            )
        )
    floor = by_name.get("frozen mlp 512 (cached)")
    if full and lora and floor:
        # where LoRA's memory goes: the frozen run holds the process, the model and the data
        # but no encoder activations, gradients or optimizer state
        lines.append(
            f"- where the memory goes: the frozen cached run (process, libraries, model, data; "
            f"no encoder activations or optimizer state) peaks at {floor['peak_rss_mb']:.0f} MB, "
            f"{floor['peak_rss_mb'] / full['peak_rss_mb']:.2f}× full fine-tuning's: the floor "
            f"under any strategy; LoRA adds {lora['peak_rss_mb'] - floor['peak_rss_mb']:.0f} MB "
            f"above it (activations kept for the backward pass), full fine-tuning "
            f"{full['peak_rss_mb'] - floor['peak_rss_mb']:.0f} MB (the same activations plus "
            "gradients and AdamW state)"
        )
    cache = strat.get("feature_cache")
    if cache:
        lines.append(
            f"- frozen feature cache: first epoch {cache['cached_first_epoch_s']} s (encodes once), later epochs "
            f"{cache['cached_later_epoch_s']} s vs {cache['uncached_epoch_s']} s uncached: **{cache['speedup']}×**"
        )
        checks.append(
            (
                "cached frozen epochs vs uncached",
                f"≥ {TARGETS['cache_speedup']}×",
                "–",
                f"{cache['speedup']}×",
                cache["speedup"] >= TARGETS["cache_speedup"],
            )
        )
    return lines + [""]


def scaling_section(scaling: dict, results: dict, peak: dict, info: dict) -> list[str]:
    rows = scaling["rows"]
    lengths = sorted({r["max_length"] for r in rows})
    batches = sorted({r["batch_size"] for r in rows})
    cell = {(r["max_length"], r["batch_size"]): r for r in rows}
    precision = scaling["precision"]
    lines = [
        "## Scaling: training samples/s by max_length × batch size",
        "",
        *section_cpu(results, "scaling", info),
        f"Full training steps (forward, backward, clipping, fused AdamW) on unpadded random tokens, "
        f"{precision}; each cell: samples/s (MFU of the {precision} ceiling; no padding, so useful = executed).",
        "",
        "| max_length | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|" + "---|" * len(batches),
    ]
    for n in lengths:
        cells = []
        for b in batches:
            r = cell.get((n, b))
            if r is None:
                cells.append("–")
                continue
            cells.append(
                f"{r['samples_per_s']} ({mfu_cell(r['tflops'] * 1e12, 1.0, peak, precision)})"
            )
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines + [""]


def profile_section(prof: dict) -> list[str]:
    lines = [
        "## Profile: top operators",
        "",
        f"`torch.profiler`, self CPU time, {prof['precision']}: training steps of `tunekit.finetune` "
        "(MiniLM, batch 32) and `run.predict` on mixed-length texts.",
        "",
        "| training op | share | calls | | predict op | share | calls |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b in zip(prof["train_top"], prof["predict_top"]):
        lines.append(
            f"| `{a['op']}` | {pct(a['share'])} | {a['calls']} | | `{b['op']}` | {pct(b['share'])} | {b['calls']} |"
        )
    return lines + [""]


def report(
    results: dict,
    info: dict,
    command: str,
    quick: bool,
    seconds: dict,
    note: str = "",
    appendix: str = "",
) -> str:
    """The Markdown page for *results* (what :func:`main` gathered, or an earlier run's
    ``--json``): every table, the ratios against both anchor settings, and the targets
    judged against the best anchor."""
    ceiling = results.get("ceiling")
    peak = {p: ceiling[f"{p}_peak_gflops"] * 1e9 for p in ("fp32", "bf16")} if ceiling else {}
    lines = header(results, info, command, quick, seconds, note)
    checks: list[tuple[str, str, str, str, bool | None]] = []
    if ceiling:
        lines += ceiling_section(ceiling, results, info)
    for task, data in (results.get("train") or {}).items():
        lines += train_section(task, data, results, peak, info, checks)
    if results.get("packing"):
        lines += packing_section(results["packing"], results, info)
    if results.get("inference"):
        lines += inference_section(results["inference"], results, peak, info, checks)
    lines += techniques_section(results)
    if results.get("strategies"):
        lines += strategies_section(results["strategies"], checks)
    if results.get("scaling"):
        lines += scaling_section(results["scaling"], results, peak, info)
    if results.get("profile"):
        lines += profile_section(results["profile"])
    if checks:
        lines += [
            "## Targets",
            "",
            "Judged against the best anchor (the fastest setting measured); the default anchor "
            "shown for comparison.",
            "",
            "| target | goal | vs default anchor | vs best anchor | |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {a} | {b} | {c} | {d} | {verdict(e)} |" for a, b, c, d, e in checks]
        lines.append("")
    if appendix:
        lines += [appendix.rstrip(), ""]
    return "\n".join(lines)


def merge_results(parts: list[dict]) -> dict:
    """One result from several runs' ``--json`` (say fp32 sides in one run, bf16 in
    another): later parts add sections, tasks and sides; the first part's machine,
    command and date head the page, and the wall times add up."""
    merged = json.loads(json.dumps(parts[0]))
    for part in parts[1:]:
        for key, value in part.items():
            if key == "train" and "train" in merged:
                for task, data in value.items():
                    mine = merged["train"].setdefault(task, data)
                    if mine is not data:
                        mine["runs"].update(data["runs"])
                        mine["probes"].update(data.get("probes", {}))
            elif key == "inference" and "inference" in merged:
                merged["inference"]["runs"].update(value["runs"])
            elif key == "seconds":
                for k, v in value.items():
                    merged["seconds"][k] = merged["seconds"].get(k, 0) + v
            elif key == "load":
                merged.setdefault("load", {}).update(value)
            elif key not in merged:
                merged[key] = value
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a sanity check")
    parser.add_argument(
        "--only", default="", help=f"comma-separated sections of {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--tasks", default="classify,ner,sts", help="training comparisons to run (train section)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="rounds per side (≥ 3)")
    parser.add_argument(
        "--texts", type=int, default=None, help="texts of the inference section (else the size's)"
    )
    parser.add_argument(
        "--train-rows", type=int, default=None, help="training rows of every task (else the size's)"
    )
    parser.add_argument(
        "--sides",
        default="",
        help="only these comparison sides (comma-separated names as on the page, e.g. "
        "'tunekit fp32,hf grouped fp32,pipeline sorted'); all by default",
    )
    parser.add_argument(
        "--probes",
        choices=("auto", "yes", "no"),
        default="auto",
        help="the torch.compile probes of the classify comparison (auto: not with --quick)",
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument(
        "--json", default=None, help="also write the raw results here (after every section)"
    )
    parser.add_argument("--note", default="", help="a remark shown as a banner under the title")
    parser.add_argument("--appendix", default=None, help="a Markdown file appended to the page")
    parser.add_argument(
        "--from-json",
        default=None,
        help="render the page from --json files of earlier runs (comma-separated: merged, "
        "later files adding sides and sections to earlier ones)",
    )
    args = parser.parse_args()
    appendix = Path(args.appendix).read_text(encoding="utf-8") if args.appendix else ""
    if args.from_json:
        saved = merge_results([json.loads(Path(f).read_text()) for f in args.from_json.split(",")])
        text = report(
            saved, saved["machine"], saved.get("command", "python benchmarks/run_all.py"),
            saved.get("quick", False), saved.get("seconds", {}), args.note or saved.get("note", ""),
            appendix,
        )  # fmt: skip
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(text)
        return
    wanted = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(
            f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}"
        )
    sizes = SIZES["quick" if args.quick else "full"]
    repeats = args.repeats or sizes["repeats"]
    if repeats < 3:
        parser.error("--repeats must be at least 3: a ratio is a median with its spread")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    keep = {t.strip() for t in args.sides.split(",") if t.strip()} or None
    probes = args.probes == "yes" or (args.probes == "auto" and not args.quick)
    info = machine_info()
    shown, skip = [], False  # the command as run, without where it wrote
    for arg in sys.argv[1:]:
        if skip or arg.startswith(("--out=", "--json=", "--appendix=")):
            skip = False
            continue
        if arg in ("--out", "--json", "--appendix"):
            skip = True
            continue
        shown.append(shlex.quote(arg))
    command = " ".join(["python benchmarks/run_all.py", *shown])
    results: dict = {
        "sizes": sizes, "shape": minilm_shape(), "machine": info, "repeats": repeats,
        "command": command, "quick": args.quick, "note": args.note, "load": {},
    }  # fmt: skip
    seconds: dict[str, float] = {}
    bf16 = bool(info["native_bf16"])

    def log(message: str) -> None:
        print(f"[run_all] {message}", file=sys.stderr, flush=True)

    def save() -> None:
        if args.json:
            tmp = Path(args.json + ".tmp")
            tmp.write_text(json.dumps(results, indent=1, default=str))
            os.replace(tmp, args.json)

    log(cpu_line(info))
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        for section in SECTIONS:
            if section not in wanted:
                continue
            log(f"{section} ...")
            start = time.perf_counter()
            before = load_average()
            if section == "ceiling":
                results["ceiling"] = run_ceiling(sizes["ceiling"])
            elif section == "train":
                chosen = {
                    t: {
                        **sizes["train"][t],
                        **({"train": args.train_rows} if args.train_rows else {}),
                    }
                    for t in tasks
                }
                results["train"] = run_train(
                    chosen, repeats, bf16, bundle, log,
                    save=lambda part: (results.__setitem__("train", part), save()),
                    keep=keep, probes=probes,
                )  # fmt: skip
            elif section == "packing":
                results["packing"] = run_packing(sizes["packing"], repeats, log)
            elif section == "inference":
                inference = {**sizes["inference"], **({"texts": args.texts} if args.texts else {})}
                results["inference"] = run_inference(
                    inference, repeats, bf16, bundle, log, keep=keep
                )
            elif section == "strategies":
                results["strategies"] = run_strategies(sizes["strategies"])
            elif section == "scaling":
                results["scaling"] = run_scaling(sizes["scaling"], "bf16" if bf16 else "fp32")
            elif section == "profile":
                results["profile"] = run_profile(sizes["profile"], "fp32")
            after = load_average()
            if before and after:
                # the busier of start and end: a figure is no better than its load
                results["load"][section] = [max(a, b) for a, b in zip(before, after)]
            seconds[section] = time.perf_counter() - start
            results["seconds"] = seconds
            save()
            log(f"{section}: {seconds[section]:.0f} s")
    results.update(seconds=seconds, date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    save()
    text = report(results, info, command, args.quick, seconds, args.note, appendix)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
