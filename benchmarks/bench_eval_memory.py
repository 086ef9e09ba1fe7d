"""Evaluation memory benchmark: the peak memory evaluation adds on top of its inputs, for
growing evaluation sets. Evaluation keeps, per example, only what ``Task.batch_outputs``
returns (class logits, the masked positions, per-token tag logits), as views into each
batch's array, never hidden states or ``[tokens, vocab]`` logits; this shows how that
peak grows with the number of examples.

Each (task, path, size) runs in its own process: the model is loaded, the records read
and encoded (the inputs, which the caller holds anyway), one small evaluation warms up
lazy imports and allocator pools, then the peak resident set is reset
(``/proc/self/clear_refs``) and the evaluation of the whole set runs. Reported: the peak
above the resident set just before, in MiB, and per example. The reference in the same run
is what the evaluation would hold if it kept the encoder's last hidden states of every
example (``examples × tokens × hidden × 4`` bytes), as a feature-extraction loop does.

The children run with glibc's mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_=65536``):
by default glibc raises that threshold after large frees, so the per-batch activation
buffers move onto the heap, which then fragments and the resident set creeps up with the
number of batches even though nothing is kept; the fixed threshold makes the resident
set follow live memory (``--default-malloc`` measures with glibc's defaults).

Paths: ``run.evaluate`` (``tunekit.load(bundle).evaluate(data)``) and ``trainer`` (the
evaluation inside ``finetune()`` after each epoch, ``Trainer.evaluate``).

    python benchmarks/bench_eval_memory.py [--sizes 2000,8000,32000] [--json out.json]
    python benchmarks/bench_eval_memory.py --only classify --sizes 1000,4000

Linux only (``/proc/self/status`` VmHWM).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import emit, machine_info, run_child  # noqa: E402

HIDDEN = 256  # the tiny encoder: memory, not accuracy, is measured
MAX_LENGTH = 64
TAGS = ("O", "B-ADJ", "I-ADJ")
ADJECTIVES = {"good", "bad", "great", "funny", "dull", "boring", "beautiful", "best", "worst"}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def snippets() -> list[str]:
    from corpora import rotten_tomatoes

    return [r["text"] for r in rotten_tomatoes()]


def records_for(task: str, n: int, seed: int = 0) -> list[dict]:
    """*n* labelled records built from Rotten-Tomatoes snippets (seeded)."""
    rng = random.Random(seed)
    texts = snippets()
    out = []
    for _ in range(n):
        text = rng.choice(texts)
        if task == "classify":
            out.append({"text": text, "label": rng.choice(("pos", "neg"))})
        else:
            tokens = text.split()[: MAX_LENGTH // 2]
            tags = ["B-ADJ" if t.lower() in ADJECTIVES else "O" for t in tokens]
            out.append({"tokens": tokens, "tags": tags})
    return out


def build(task: str, workdir: Path):
    """A tiny model trained one step for *task* and saved as a bundle; the bundle path."""
    import tunekit
    from tunekit.testing import make_tiny_model

    bundle = workdir / f"{task}-bundle"
    if bundle.is_dir():
        return bundle
    words = sorted({w.lower() for t in snippets() for w in t.split()})
    tiny = make_tiny_model(
        workdir / "tiny", [" ".join(words)], hidden_size=HIDDEN, num_heads=4, num_layers=2
    )
    run = tunekit.finetune(
        task,
        data=records_for(task, 64),
        model=tiny,
        epochs=1,
        eval_split=0,
        max_length=MAX_LENGTH,
        progress=False,
    )
    run.save(bundle)
    return bundle


def child(task: str, path: str, n: int, bundle: str) -> dict:
    import tunekit
    from tunekit.trainer import Trainer

    run = tunekit.load(bundle, device="cpu")
    records = run.task.read(records_for(task, n, seed=1), name="eval_data")
    warm = run.task.read(records_for(task, 256, seed=2), name="eval_data")
    if path == "trainer":
        trainer = Trainer(
            model=run.model,
            task=run.task,
            strategy=run.strategy,
            tokenizer=run.tokenizer,
            config=run.training,
        )

        def encode(rows):
            return run.task.encode(rows, run.tokenizer, max_length=MAX_LENGTH, with_labels=True)

        features, warm_features = encode(records), encode(warm)

        def evaluate(feats, rows):
            return trainer.evaluate(feats, rows)[0]

        evaluate(warm_features, warm)
        gc.collect()
        before = _status_kb("VmRSS")
        _reset_peak()
        metrics = evaluate(features, records)
    else:
        run.evaluate(warm)
        gc.collect()
        before = _status_kb("VmRSS")
        _reset_peak()
        metrics = run.evaluate(records)
    peak = _status_kb("VmHWM") - before
    sample = run.task.encode(records[:500], run.tokenizer, max_length=MAX_LENGTH, with_labels=False)
    tokens = sum(len(f["input_ids"]) for f in sample) / len(sample)
    hidden_bytes = n * min(tokens, MAX_LENGTH) * HIDDEN * 4
    return {
        "task": task,
        "path": path,
        "examples": n,
        "peak_above_inputs_mib": round(peak / 1024, 1),
        "bytes_per_example": round(peak * 1024 / n),
        "hidden_states_mib": round(hidden_bytes / 2**20, 1),
        "metric": {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,8000,32000")
    parser.add_argument("--only", default="classify,token-tagging")
    parser.add_argument("--paths", default="run.evaluate,trainer")
    parser.add_argument("--json", default=None)
    parser.add_argument("--default-malloc", action="store_true")
    parser.add_argument("--child", nargs=4, metavar=("TASK", "PATH", "N", "BUNDLE"))
    args = parser.parse_args()
    if args.child:
        task, path, n, bundle = args.child
        emit(child(task, path, int(n), bundle))
        return
    if not args.default_malloc:
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.only.split(","):
            bundle = build(task, Path(tmp))
            for path in args.paths.split(","):
                for n in sizes:
                    row = run_child(
                        "bench_eval_memory.py", "--child", task, path, str(n), str(bundle)
                    )
                    results.append(row)
                    print(
                        f"{task:<14}{path:<14}{n:>8} examples  peak above inputs "
                        f"{row['peak_above_inputs_mib']:>7.1f} MiB ({row['bytes_per_example']:>6} B/example)"
                        f"   all hidden states would be {row['hidden_states_mib']:>8.1f} MiB",
                        flush=True,
                    )
    print(f"\ngrowth from the smallest to the largest set (examples ×{sizes[-1] / sizes[0]:.0f}):")
    for task in args.only.split(","):
        for path in args.paths.split(","):
            rows = [r for r in results if r["task"] == task and r["path"] == path]
            lo, hi = rows[0]["peak_above_inputs_mib"], rows[-1]["peak_above_inputs_mib"]
            print(f"  {task:<14}{path:<14}peak ×{hi / max(lo, 0.1):.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine_info(), "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
