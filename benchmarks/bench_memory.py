"""Where the memory of a training run goes: ``full`` vs ``lora`` (with and without
gradient checkpointing), fp32 and bf16, at the strategy benchmark's settings
(``bench_strategies.py``: Rotten-Tomatoes snippets, batch 32, max_length 64, the embedded
MiniLM, ``eval_split=0``, then ``run.evaluate`` on the test rows).

Each (run, precision) trains in its own fresh process, which reads its resident set
(``/proc/self/status`` VmRSS, in MiB) at each stage:

- ``imports``: after ``import torch, transformers, tunekit``;
- ``data``: + the records read;
- ``model``: + model and tokenizer loaded (``load_backbone``);
- ``pre-train``: at ``Trainer.fit``'s start (features encoded, the strategy applied), the
  baseline that training adds to; the peak counter is reset here (``clear_refs``);
- ``train peak``: the highest resident set while training (VmHWM since the reset);
- ``process peak``: the process's ``ru_maxrss`` at the end, after ``run.evaluate`` on the
  test rows, the figure ``bench_strategies.py`` reports.

Beside them, counted rather than measured: the weights, the trainable weights' gradients
and AdamW's two moments (``trainable × 4 × 3`` bytes), and the bytes autograd saves for
the backward pass in one training step (a ``saved_tensors_hooks`` pair sums the distinct
storages saved, on a step of the longest batch). The table prints LoRA's ratio to full at
the same precision both as process peaks and as training-added memory (train peak minus
the pre-training baseline).

    python benchmarks/bench_memory.py                      # fp32 and bf16, glibc defaults
    python benchmarks/bench_memory.py --precisions fp32 --epochs 1 --json mem.json
    python benchmarks/bench_memory.py --malloc pinned      # pin_mmap_threshold() first
    python benchmarks/bench_memory.py --malloc trim        # + malloc_trim(0) after each step
    python benchmarks/bench_memory.py --malloc arena1      # + MALLOC_ARENA_MAX=1

``--malloc``: ``default`` is glibc's defaults (tunekit leaves them); ``pinned`` calls
``tunekit.hardware.pin_mmap_threshold()`` first (``mmap64k`` sets the same through the
environment); ``trim`` adds ``malloc_trim(0)`` after each step; the others set glibc's
environment variables in the children.

Linux only (``/proc/self/status``, ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: name → (strategy, options), as in bench_strategies.py
RUNS: dict[str, tuple[str, dict]] = {
    "full": ("full", {"learning_rate": 5e-5}),
    "lora r=8": ("lora", {"learning_rate": 1e-3, "r": 8}),
    "lora r=8 ckpt": ("lora", {"learning_rate": 1e-3, "r": 8, "gradient_checkpointing": True}),
}

MALLOC = {
    "default": {},  # glibc's defaults (its dynamic mmap threshold); tunekit does not pin
    "pinned": {},  # tunekit.hardware.pin_mmap_threshold() before training
    "arena1": {"MALLOC_ARENA_MAX": "1"},
    "mmap64k": {"MALLOC_MMAP_THRESHOLD_": "65536"},
    "arena1+mmap64k": {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "65536"},
    "trim": {},  # malloc_trim(0) after each training step (in the child)
}


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise KeyError(key)


def _rss() -> float:
    return _status_mb("VmRSS")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def _every_step(trainer, trim: str) -> None:
    """Hand the freed heap back to the OS after each training step (glibc ``malloc_trim``),
    on this trainer only."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    step = type(trainer)._train_step

    def trimmed(*a, **k):
        loss = step(trainer, *a, **k)
        libc.malloc_trim(0)
        return loss

    trainer._train_step = trimmed


def child(name: str, precision: str, args: argparse.Namespace) -> dict:
    stages: dict[str, float] = {}
    trim = args.malloc == "trim"
    if args.malloc == "pinned":
        from tunekit import hardware

        hardware.pin_mmap_threshold()
    import torch
    import transformers  # noqa: F401

    import tunekit
    import tunekit.api
    from tunekit.trainer import Trainer

    stages["imports"] = _rss()
    from corpora import rotten_tomatoes_split

    train, test = rotten_tomatoes_split(train_size=args.train, test_size=args.test)
    strip = lambda rows: [{"text": r["text"], "label": r["label"]} for r in rows]  # noqa: E731
    train, test = strip(train), strip(test)
    stages["data"] = _rss()

    counted: dict[str, float] = {}
    load_backbone = tunekit.api.load_backbone

    def timed_load(*a, **k):
        backbone = load_backbone(*a, **k)
        stages["model"] = _rss()
        return backbone

    tunekit.api.load_backbone = timed_load
    fit, train_step = Trainer.fit, Trainer._train_step

    def measured_fit(self, *a, **k):
        stages["pre-train"] = _rss()
        model = self.model
        params = list(model.parameters())
        trainable = [p for p in params if p.requires_grad]
        counted["weights"] = sum(p.numel() * p.element_size() for p in params) / 2**20
        counted["trainable params"] = sum(p.numel() for p in trainable)
        # the gradients plus AdamW's exp_avg and exp_avg_sq, all in the weights' dtype
        counted["grads+adam"] = sum(3 * p.numel() * p.element_size() for p in trainable) / 2**20
        _reset_peak()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        try:
            if trim:
                _every_step(self, trim)
            return fit(self, *a, **k)
        finally:
            counted["train s"] = round(time.perf_counter() - start, 1)
            # pages the kernel had to map (and zero) while training: the cost of mmap'd blocks
            counted["page faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            stages["train peak"] = _status_mb("VmHWM")
            stages["post-train"] = _rss()

    def measured_step(self, model, optimizer, scheduler, batch, *a, **k):
        # saved-for-backward bytes of the first step whose batch is the longest so far
        length = batch["input_ids"].shape[1]
        if length < counted.get("saved len", 0):
            return train_step(self, model, optimizer, scheduler, batch, *a, **k)
        seen: dict[int, int] = {}
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

        def pack(t):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                if storage.data_ptr() not in weights:  # a frozen weight is no extra memory
                    seen[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = train_step(self, model, optimizer, scheduler, batch, *a, **k)
        counted["saved len"] = length
        counted["saved MiB"] = round(sum(seen.values()) / 2**20, 1)
        counted["saved rows"] = batch["input_ids"].shape[0]
        return loss

    Trainer.fit, Trainer._train_step = measured_fit, measured_step
    strategy, options = RUNS[name]
    torch.manual_seed(0)
    run = tunekit.finetune(
        task="classify",
        data=train,
        strategy=strategy,
        eval_split=0,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        precision=precision,
        progress=False,
        **options,
    )
    losses = [r["train_loss"] for r in run.history.rows]
    accuracy = run.evaluate(test)["accuracy"]
    stages["post-eval"] = _rss()
    from machine import peak_rss_mb

    stages["process peak"] = peak_rss_mb()
    return {
        "run": name,
        "precision": run.precision,
        "stages": stages,
        "counted": counted,
        "losses": losses,
        "accuracy": round(accuracy, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--only", default="", help="comma-separated run names")
    parser.add_argument("--malloc", default="default", choices=sorted(MALLOC))
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.precision, args)
        from machine import emit  # imported after the child's stages were read

        emit(result)
        return
    from machine import cpu_line, load_average, machine_info, run_child

    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    names = [n for n in RUNS if not wanted or n in wanted]
    results = []
    for precision in args.precisions.split(","):
        for name in names:
            cmd = ["--child", name, "--precision", precision, "--malloc", args.malloc]
            for flag in ("train", "test", "epochs", "batch_size", "max_length"):
                cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
            try:
                r = run_child(Path(__file__).name, *cmd, env=MALLOC[args.malloc])
            except RuntimeError as exc:
                print(f"{name} {precision}: {exc}", file=sys.stderr)
                continue
            results.append(r)
            print(f"{name} {r['precision']}: {r['stages']} {r['counted']}", file=sys.stderr)
    print(
        f"\nMemory (MiB), Rotten-Tomatoes train {args.train} / test {args.test}, epochs "
        f"{args.epochs}, batch {args.batch_size}, max_length {args.max_length}, MiniLM-L6 "
        f"(embedded), malloc {args.malloc} {MALLOC[args.malloc] or ''}\n"
        f"{cpu_line(machine_info())}; load average {load_average()}\n"
    )
    print(
        "| run | precision | imports | +data | +model | pre-train | train peak | "
        "train added | process peak | weights | grads+AdamW | saved for backward (1 step) "
        "| train s | page faults | accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s, c = r["stages"], r["counted"]
        print(
            f"| {r['run']} | {r['precision']} | {s['imports']:.0f} | {s['data']:.0f} | "
            f"{s['model']:.0f} | {s['pre-train']:.0f} | {s['train peak']:.0f} | "
            f"{s['train peak'] - s['pre-train']:.0f} | {s['process peak']:.0f} | "
            f"{c['weights']:.0f} | {c['grads+adam']:.1f} | {c.get('saved MiB', 0):.0f} "
            f"({c.get('saved rows')}×{c.get('saved len')}) | {c['train s']} | {c['page faults']:,} | "
            f"{r['accuracy']:.4f} |"
        )
    print("\nLoRA / full at the same precision:\n")
    print("| run | precision | process peak ratio | training-added ratio | saved-bytes ratio |")
    print("|---|---|---|---|---|")
    full = {r["precision"]: r for r in results if r["run"] == "full"}
    for r in results:
        f = full.get(r["precision"])
        if r["run"] == "full" or f is None:
            continue
        s, fs = r["stages"], f["stages"]
        added = (s["train peak"] - s["pre-train"]) / (fs["train peak"] - fs["pre-train"])
        saved = r["counted"].get("saved MiB", 0) / max(f["counted"].get("saved MiB", 1), 1e-9)
        print(
            f"| {r['run']} | {r['precision']} | {s['process peak'] / fs['process peak']:.2f} | "
            f"{added:.2f} | {saved:.2f} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"settings": vars(args), "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
