"""Run the performance benchmarks and rewrite ``docs/benchmarks.md``.

1. hardware ceiling: this machine's matmul peak, fp32 and bf16 (``bench_ceiling.py``);
2. training, full fine-tune: tunekit vs the transformers ``Trainer``, each side in its
   own process, fp32 and (where the CPU has native bf16) bf16 (``bench_train.py``);
3. inference: ``run.predict`` vs the transformers ``pipeline`` on the same network
   (``bench_inference.py``);
4. strategies: accuracy, seconds, trainable parameters, peak RSS, bundle size
   (``bench_strategies.py``);
5. scaling: training samples/s over max_length × batch size (``bench_scaling.py``);
6. profile: top ``torch.profiler`` operators of training and predict (``profile_ops.py``).

Model FLOPs utilisation (MFU) = model FLOPs (6·params·tokens for training, 2·params·tokens
for inference, plus attention; real tokens only, embeddings excluded) / seconds / the
measured matmul peak of the same precision.

    python benchmarks/run_all.py            # the documented sizes (~10 min on 2 idle cores)
    python benchmarks/run_all.py --quick    # small sizes, a sanity check
    python benchmarks/run_all.py --only train,inference --out /tmp/bench.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from machine import (
    ROOT,
    machine_info,
    minilm_shape,
    model_flops,
    rt_split,
    run_child,
    token_lengths,
)

SECTIONS = ("ceiling", "train", "inference", "strategies", "scaling", "profile")

SIZES = {
    "full": {
        "train": dict(train=2000, test=1000, epochs=1, batch_size=32, max_length=128),
        "inference": dict(texts=5000, batch_size=64, max_length=128),
        "strategies": dict(
            train=1000, test=500, epochs=2, batch_size=32, max_length=64,
            only=["full", "lora r=8", "lora r=8 (checkpointing)", "peft ia3",
                  "frozen mlp 512 (cached)", "frozen mlp 512 (uncached)"],
        ),
        "scaling": dict(lengths="64,128,256,512", batches="8,16,32,64", seconds=1.0),
        "ceiling": dict(seconds=1.0),
        "profile": dict(train=160, texts=256),
    },
    "quick": {
        "train": dict(train=300, test=200, epochs=1, batch_size=32, max_length=128),
        "inference": dict(texts=500, batch_size=64, max_length=128),
        "strategies": dict(
            train=200, test=100, epochs=2, batch_size=32, max_length=64,
            only=["full", "lora r=8", "lora r=8 (checkpointing)", "frozen mlp 512 (cached)",
                  "frozen mlp 512 (uncached)"],
        ),
        "scaling": dict(lengths="64,128", batches="8,16", seconds=0.3),
        "ceiling": dict(seconds=0.3),
        "profile": dict(train=64, texts=64),
    },
}  # fmt: skip

TARGETS = {
    "train_speedup": 1.5,
    "accuracy_points": 0.5,
    "inference_speedup": 1.3,
    "lora_rss_ratio": 0.6,
    "cache_speedup": 5.0,
    "train_mfu_bf16": 0.40,
}


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


def run_train(sizes, bf16: bool, bundle: Path) -> dict:
    runs = {}
    args = flags(sizes)
    runs["tunekit fp32"] = run_child(
        "bench_train.py", "--side", "tunekit", *args, "--save", str(bundle)
    )
    runs["hf fp32"] = run_child("bench_train.py", "--side", "hf", *args)
    if bf16:
        runs["tunekit bf16"] = run_child(
            "bench_train.py", "--side", "tunekit", "--precision", "bf16", *args
        )
        runs["hf bf16"] = run_child("bench_train.py", "--side", "hf", "--precision", "bf16", *args)
    train, _ = rt_split(sizes["train"], 0)
    lengths = token_lengths([r["text"] for r in train], sizes["max_length"]) * sizes["epochs"]
    return {"runs": runs, "lengths": lengths}


def run_inference(sizes, bf16: bool, bundle: Path) -> dict:
    args = flags(sizes) + (["--bundle", str(bundle)] if bundle.is_dir() else [])
    return run_child("bench_inference.py", *args, *(["--bf16"] if bf16 else []))


def run_strategies(sizes) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strategies.json"
        cmd = [
            sys.executable, str(ROOT / "benchmarks" / "bench_strategies.py"), *flags(sizes),
            "--only", ",".join(sizes["only"]), "--json", str(out),
        ]  # fmt: skip
        import subprocess

        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode or not out.is_file():
            raise RuntimeError(f"bench_strategies.py failed:\n{done.stderr[-4000:]}")
        return json.loads(out.read_text())


def run_scaling(sizes, precision: str) -> dict:
    return run_child("bench_scaling.py", *flags(sizes), "--precision", precision)


def run_profile(sizes, precision: str) -> dict:
    return run_child("profile_ops.py", *flags(sizes), "--precision", precision, "--json")


# ---- report ----------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def report(
    results: dict, info: dict, command: str, quick: bool, seconds: dict, note: str = ""
) -> str:
    shape = results.get("shape", {})
    ceiling = results.get("ceiling")
    peak = {p: ceiling[f"{p}_peak_gflops"] * 1e9 for p in ("fp32", "bf16")} if ceiling else {}
    lines = [
        "# Benchmarks",
        "",
        "Written by `benchmarks/run_all.py`; do not edit by hand. How to read and reproduce",
        "these figures, and what tunekit does for speed: [Performance](performance.md).",
        "",
        f"- command: `{command}`"
        + (" (**quick sizes**: a sanity check, not the reference figures)" if quick else ""),
        *([f"- note: {note}"] if note else []),
        f"- date: {results.get('date') or datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {info['cpu']}, {info['logical_cpus']} logical CPUs ({info['usable_cpus']} usable), "
        f"torch threads {info['torch_threads']}, {info['memory_gb']} GB RAM, native bf16: "
        f"{'yes' if info['native_bf16'] else 'no'}, GPU: {info['gpu'] or 'none'}",
        f"- SIMD: {', '.join(info['simd']) or '–'}",
        f"- software: Python {info['python']}, "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v),
        f"- environment: {', '.join(f'{k}={v}' for k, v in info['env'].items()) or 'no thread variables set'}",
        f"- model: embedded all-MiniLM-L6-v2, {shape.get('params', 0) / 1e6:.1f} M parameters "
        f"({shape.get('matmul_params', 0) / 1e6:.1f} M outside the embedding tables, used for FLOPs)",
        *(
            [
                f"- wall time of this run: {sum(seconds.values()):.0f} s ("
                + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
                + ")"
            ]
            if seconds
            else []
        ),
        "",
    ]
    checks: list[tuple[str, str, str, bool | None]] = []

    if ceiling:
        lines += [
            "## Hardware ceiling",
            "",
            "Best matmul throughput measured in this run (GFLOP/s), per shape:",
            "",
            "| precision | " + " | ".join(ceiling["shapes"]["fp32"]) + " | peak |",
            "|---|" + "---|" * (len(ceiling["shapes"]["fp32"]) + 1),
        ]
        for p in ("fp32", "bf16"):
            row = ceiling["shapes"][p]
            lines.append(
                f"| {p} | "
                + " | ".join(str(v) for v in row.values())
                + f" | **{ceiling[f'{p}_peak_gflops']}** |"
            )
        lines.append("")

    train = results.get("train")
    if train:
        runs, lengths = train["runs"], train["lengths"]
        flops = model_flops(lengths, shape, training=True)
        sz = results["sizes"]["train"]
        lines += [
            "## Training: full fine-tune, tunekit vs transformers Trainer",
            "",
            f"Rotten-Tomatoes snippets, seeded split: train {sz['train']}, test {sz['test']}; "
            f"{sz['epochs']} epoch, batch {sz['batch_size']}, lr 5e-5, warmup 10 %, weight decay 0.01, "
            f"max_length {sz['max_length']}, seed 42; the same network on both sides (CLS → dense+tanh → "
            "classifier). Each side in its own process. *loop s*: the training loop; *end-to-end s*: "
            "model load + tokenisation + training (imports excluded). tunekit batches by length; "
            f"the Trainer pads each random batch (its default). {sum(lengths):,} real tokens.",
            "",
            "| run | loop s | end-to-end s | samples/s | accuracy | peak RSS MB | MFU (own precision) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in runs.items():
            mfu = flops / r["loop_seconds"] / peak[r["precision"]] if peak else None
            r["mfu"] = mfu
            lines.append(
                f"| {name} | {r['loop_seconds']} | {r['end_to_end_seconds']} | {r['samples_per_s']} | "
                f"{r['accuracy']:.4f} | {r['peak_rss_mb']} | {pct(mfu)} |"
            )
        lines.append("")
        for p in ("fp32", "bf16"):
            tk, hf = runs.get(f"tunekit {p}"), runs.get(f"hf {p}")
            if tk and hf:
                ratio = hf["loop_seconds"] / tk["loop_seconds"]
                points = 100 * (tk["accuracy"] - hf["accuracy"])
                lines.append(
                    f"- {p}: tunekit **{ratio:.2f}×** the Trainer's samples/s "
                    f"(end-to-end {hf['end_to_end_seconds'] / tk['end_to_end_seconds']:.2f}×), accuracy "
                    f"{points:+.1f} points, peak RSS {tk['peak_rss_mb'] / hf['peak_rss_mb']:.2f}×"
                )
                if p == "fp32":
                    checks.append(
                        (
                            "full fine-tune throughput vs Trainer (fp32)",
                            f"≥ {TARGETS['train_speedup']}×",
                            f"{ratio:.2f}×",
                            ratio >= TARGETS["train_speedup"],
                        )
                    )
                    checks.append(
                        (
                            "accuracy vs Trainer",
                            f"within {TARGETS['accuracy_points']} point (or better)",
                            f"{points:+.1f} points",
                            points >= -TARGETS["accuracy_points"],
                        )
                    )
        if runs.get("tunekit bf16") and runs.get("tunekit fp32"):
            a, b = runs["tunekit fp32"], runs["tunekit bf16"]
            lines.append(
                f"- tunekit bf16 vs fp32: {a['loop_seconds'] / b['loop_seconds']:.2f}× faster, accuracy "
                f"{100 * (b['accuracy'] - a['accuracy']):+.1f} points"
            )
            mfu16 = b.get("mfu")
            checks.append(
                (
                    "training MFU (bf16, length ≤ 128) of the bf16 matmul peak",
                    f"≥ {pct(TARGETS['train_mfu_bf16'])}",
                    pct(mfu16),
                    None if mfu16 is None else mfu16 >= TARGETS["train_mfu_bf16"],
                )
            )
        lines.append("")

    inf = results.get("inference")
    if inf:
        iflops = model_flops(inf["lengths_list_for_flops"], shape, training=False)
        mfu_tk = iflops / inf["tunekit_seconds"] / peak["fp32"] if peak else None
        mfu_pipe = iflops / inf["pipeline_seconds"] / peak["fp32"] if peak else None
        lines += [
            "## Inference: run.predict vs transformers pipeline",
            "",
            f"{inf['texts']:,} texts of mixed length (1–5 snippets joined; {inf['lengths']['min']}–"
            f"{inf['lengths']['max']} tokens, mean {inf['lengths']['mean']}), batch {inf['batch_size']}, "
            f"max_length {inf['max_length']}, fp32; the pipeline serves a `BertForSequenceClassification` "
            "holding exactly the tunekit model's weights. tunekit sorts by length (restoring the order).",
            "",
            "| side | seconds | texts/s | MFU (fp32 peak) | labels equal to the pipeline's |",
            "|---|---|---|---|---|",
            f"| tunekit `run.predict` | {inf['tunekit_seconds']} | {inf['tunekit_texts_per_s']} | {pct(mfu_tk)} | "
            f"{inf['labels_agree']} / {inf['texts']} |",
            f"| transformers `pipeline` | {inf['pipeline_seconds']} | {inf['pipeline_texts_per_s']} | {pct(mfu_pipe)} | – |",
        ]
        if "tunekit_bf16_seconds" in inf:
            mfu16 = iflops / inf["tunekit_bf16_seconds"] / peak["bf16"] if peak else None
            lines.append(
                f"| tunekit `run.predict`, bf16 | {inf['tunekit_bf16_seconds']} | {inf['tunekit_bf16_texts_per_s']} | "
                f"{pct(mfu16)} (bf16 peak) | {inf['bf16_labels_agree']} / {inf['texts']} |"
            )
        lines += ["", f"- tunekit **{inf['speedup']}×** the pipeline's texts/s (fp32)", ""]
        checks.append(
            (
                "inference vs pipeline",
                f"≥ {TARGETS['inference_speedup']}×, identical labels",
                f"{inf['speedup']}×, {inf['labels_agree']}/{inf['texts']} equal",
                inf["speedup"] >= TARGETS["inference_speedup"]
                and inf["labels_agree"] == inf["texts"],
            )
        )

    strat = results.get("strategies")
    if strat:
        s = strat["settings"]
        lines += [
            "## Strategies",
            "",
            f"`classify` on the Rotten-Tomatoes split (train {s['train']}, test {s['test']}), {s['epochs']} epochs, "
            f"batch {s['batch_size']}, max_length {s['max_length']}, fp32; each run in its own process.",
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
                        f"{lean_ratio:.2f}×",
                        lean_ratio <= TARGETS["lora_rss_ratio"],
                    )
                )
            checks.append(
                (
                    "LoRA peak RSS vs full",
                    f"≤ {TARGETS['lora_rss_ratio']}×",
                    f"{ratio:.2f}×",
                    ratio <= TARGETS["lora_rss_ratio"],
                )
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
                    f"{cache['speedup']}×",
                    cache["speedup"] >= TARGETS["cache_speedup"],
                )
            )
        lines.append("")

    scaling = results.get("scaling")
    if scaling:
        rows = scaling["rows"]
        lengths = sorted({r["max_length"] for r in rows})
        batches = sorted({r["batch_size"] for r in rows})
        cell = {(r["max_length"], r["batch_size"]): r for r in rows}
        lines += [
            "## Scaling: training samples/s by max_length × batch size",
            "",
            f"Full training steps (forward, backward, clipping, fused AdamW) on unpadded random tokens, "
            f"{scaling['precision']}; each cell: samples/s (MFU of the {scaling['precision']} peak).",
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
                mfu = r["tflops"] * 1e12 / peak[scaling["precision"]] if peak else None
                cells.append(f"{r['samples_per_s']} ({pct(mfu)})")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")

    prof = results.get("profile")
    if prof:
        lines += [
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
        lines.append("")

    if checks:
        lines += ["## Targets", "", "| target | goal | measured | |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {verdict(d)} |" for a, b, c, d in checks]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a sanity check")
    parser.add_argument(
        "--only", default="", help=f"comma-separated sections of {', '.join(SECTIONS)}"
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument("--note", default="", help="a remark for the page header")
    parser.add_argument(
        "--from-json", default=None, help="render the page from a --json file of an earlier run"
    )
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        text = report(
            saved, saved["machine"], saved.get("command", "python benchmarks/run_all.py"),
            saved.get("quick", False), saved.get("seconds", {}), args.note or saved.get("note", ""),
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
    info = machine_info()
    results: dict = {"sizes": sizes, "shape": minilm_shape(), "machine": info}
    seconds: dict[str, float] = {}
    bf16 = bool(info["native_bf16"])
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        for section in SECTIONS:
            if section not in wanted:
                continue
            print(f"[run_all] {section} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            if section == "ceiling":
                results["ceiling"] = run_ceiling(sizes["ceiling"])
            elif section == "train":
                results["train"] = run_train(sizes["train"], bf16, bundle)
            elif section == "inference":
                results["inference"] = run_inference(sizes["inference"], bf16, bundle)
            elif section == "strategies":
                results["strategies"] = run_strategies(sizes["strategies"])
            elif section == "scaling":
                results["scaling"] = run_scaling(sizes["scaling"], "bf16" if bf16 else "fp32")
            elif section == "profile":
                results["profile"] = run_profile(sizes["profile"], "fp32")
            seconds[section] = time.perf_counter() - start
            print(f"[run_all] {section}: {seconds[section]:.0f} s", file=sys.stderr, flush=True)
    shown, skip = [], False  # the command as run, without where it wrote
    for arg in sys.argv[1:]:
        if skip or arg.startswith(("--out=", "--json=")):
            skip = False
            continue
        if arg in ("--out", "--json"):
            skip = True
            continue
        shown.append(shlex.quote(arg))
    command = " ".join(["python benchmarks/run_all.py", *shown])
    results.update(
        command=command,
        quick=args.quick,
        seconds=seconds,
        note=args.note,
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    text = report(results, info, command, args.quick, seconds, args.note)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print(text)


if __name__ == "__main__":
    main()
