"""Strategy benchmark: `classify` on the Rotten-Tomatoes snippets (the foundation
benchmark's seeded split) with the embedded MiniLM, once per strategy, each in its own
process so peak RSS is per strategy. Reports accuracy, train seconds, trainable
parameters, peak RSS and bundle size, and the frozen strategy with vs without its
feature cache (seconds per epoch).

    python benchmarks/bench_strategies.py [--train 2000 --test 1000 --epochs 3 --max-length 64]
    python benchmarks/bench_strategies.py --only frozen,lora --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from machine import emit, peak_rss_mb, run_child

#: name → (strategy, options); learning rates are the usual ones for each kind of training
RUNS: dict[str, tuple[str, dict]] = {
    "full": ("full", {"learning_rate": 5e-5}),
    "full lr_decay=0.8": ("full", {"learning_rate": 1e-4, "lr_decay": 0.8}),
    "frozen linear (cached)": ("frozen", {"learning_rate": 2e-3}),
    "frozen mlp 512 (cached)": (
        "frozen",
        {"learning_rate": 1e-3, "head": "mlp", "hidden": [512], "dropout": 0.1},
    ),
    "frozen mlp 512 (uncached)": (
        "frozen",
        {
            "learning_rate": 1e-3,
            "head": "mlp",
            "hidden": [512],
            "dropout": 0.1,
            "cache_features": False,
        },
    ),
    "lora r=8": ("lora", {"learning_rate": 1e-3, "r": 8}),
    "lora r=8 (checkpointing)": (
        "lora",
        {"learning_rate": 1e-3, "r": 8, "gradient_checkpointing": True},
    ),
    "peft ia3": ("peft", {"learning_rate": 5e-3, "method": "ia3"}),
    "layer-mix (cached)": ("layer-mix", {"learning_rate": 2e-3, "cache_features": True}),
    "top-k k=2": ("top-k", {"learning_rate": 1e-4, "k": 2}),
}


def child(name: str, args: argparse.Namespace) -> dict:
    import torch
    from corpora import rotten_tomatoes_split

    import tunekit

    strategy, options = RUNS[name]
    train, test = rotten_tomatoes_split(train_size=args.train, test_size=args.test)
    strip = lambda rows: [{"text": r["text"], "label": r["label"]} for r in rows]  # noqa: E731
    torch.manual_seed(0)
    start = time.perf_counter()
    run = tunekit.finetune(
        task="classify",
        data=strip(train),
        strategy=strategy,
        eval_split=0,  # epoch seconds are pure training time
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        precision="fp32",
        progress=False,
        **options,
    )
    train_seconds = time.perf_counter() - start
    accuracy = run.evaluate(strip(test))["accuracy"]
    with tempfile.TemporaryDirectory() as tmp:
        run.save(Path(tmp) / "bundle")
        files = [p for p in (Path(tmp) / "bundle").rglob("*") if p.is_file()]
        bundle_bytes = sum(p.stat().st_size for p in files)
        weights_bytes = (Path(tmp) / "bundle" / "model.safetensors").stat().st_size
    epoch_seconds = [r["seconds"] for r in run.history.rows]
    return {
        "run": name,
        "strategy": strategy,
        "accuracy": round(accuracy, 4),
        "train_seconds": round(train_seconds, 1),
        "epoch_seconds": epoch_seconds,
        "trainable_params": run.history.info["trainable_params"],
        "trainable_percent": run.history.info["trainable_percent"],
        "peak_rss_mb": peak_rss_mb(),
        "bundle_mb": round(bundle_bytes / 1e6, 2),
        "weights_mb": round(weights_bytes / 1e6, 3),
        "layer_weights": [round(w, 3) for w in run.layer_weights] if run.layer_weights else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--only", default="", help="comma-separated run names or strategy names")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        emit(child(args.child, args))
        return
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    # a run's own name first: "full" is the run "full", not every run of strategy full
    names = [
        n
        for n in RUNS
        if not wanted or n in wanted or (RUNS[n][0] in wanted and RUNS[n][0] not in RUNS)
    ]
    results = []
    for name in names:
        cmd = ["--child", name]
        for flag in ("train", "test", "epochs", "batch_size", "max_length"):
            cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
        try:
            r = run_child(Path(__file__).name, *cmd)
        except RuntimeError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            continue
        results.append(r)
        print(
            f"{name}: acc {r['accuracy']:.4f}, {r['train_seconds']} s, epochs {r['epoch_seconds']}",
            file=sys.stderr,
        )
    print(
        f"\nRotten-Tomatoes snippets, train {args.train} / test {args.test}, epochs {args.epochs}, "
        f"batch {args.batch_size}, max_length {args.max_length}, MiniLM-L6 (embedded), fp32, CPU\n"
    )
    print(
        "| run | accuracy | train s | trainable params | trainable % | peak RSS MB | bundle MB | weights MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['run']} | {r['accuracy']:.4f} | {r['train_seconds']} | {r['trainable_params']:,} | "
            f"{r['trainable_percent']:.3f} | {r['peak_rss_mb']} | {r['bundle_mb']} | {r['weights_mb']} |"
        )
    by_name = {r["run"]: r for r in results}
    cached, uncached = (
        by_name.get("frozen mlp 512 (cached)"),
        by_name.get("frozen mlp 512 (uncached)"),
    )
    speed = None
    if cached and uncached and len(cached["epoch_seconds"]) > 1:
        later = sum(cached["epoch_seconds"][1:]) / len(cached["epoch_seconds"][1:])
        plain = sum(uncached["epoch_seconds"]) / len(uncached["epoch_seconds"])
        speed = {
            "cached_first_epoch_s": cached["epoch_seconds"][0],
            "cached_later_epoch_s": round(later, 3),
            "uncached_epoch_s": round(plain, 3),
            "speedup": round(plain / later, 1),
        }
        print(
            f"\nfrozen feature cache: first epoch {speed['cached_first_epoch_s']} s (encodes once), later epochs "
            f"{speed['cached_later_epoch_s']} s vs uncached {speed['uncached_epoch_s']} s per epoch "
            f"→ {speed['speedup']}× faster"
        )
    import torch

    import tunekit

    summary = {
        "settings": vars(args) | {"child": None},
        "results": results,
        "feature_cache": speed,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "tunekit": tunekit.__version__,
        "torch": torch.__version__,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=2))


if __name__ == "__main__":
    main()
