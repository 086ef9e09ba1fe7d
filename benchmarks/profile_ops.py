"""Where the time goes: ``torch.profiler`` top operators of tunekit training steps and of
``run.predict``, on the embedded MiniLM with Rotten-Tomatoes snippets.

Training: a few steps of the real trainer (``tunekit.finetune``, full fine-tune), profiled
after a warm-up step; predict: ``run.predict`` on mixed-length texts. Prints the top
operators by self CPU time and the time per category (GEMMs, attention, dropout,
layer norm, GELU/tanh, embedding, optimizer, allocation/fill/copy — the ``copy_`` of a
linear layer is its bias broadcast into the output before the GEMM — other elementwise
ops, and the rest: Python, autograd and framework time outside any operator), or with
``--json`` emits them for ``run_all.py``.

    python benchmarks/profile_ops.py [--precision bf16] [--top 12] [--threads 2]
"""

from __future__ import annotations

import argparse

from machine import emit, mixed_texts, rt_split

#: operator categories, matched in this order against the lower-cased operator name
CATEGORIES = (
    ("GEMM", ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "mkldnn", "mkl_")),
    ("attention", ("scaled_dot_product", "softmax")),
    ("dropout", ("dropout", "bernoulli")),
    ("layer norm", ("layer_norm",)),
    ("GELU / tanh", ("gelu", "tanh")),
    ("embedding", ("embedding", "index_select")),
    ("optimizer + grad clipping", ("adam", "_foreach", "vector_norm", "clip")),
    (
        "allocation / fill / copy",
        ("aten::empty", "aten::zeros", "aten::zero_", "aten::fill_", "aten::copy_", "aten::clone"),
    ),
    (
        "other elementwise",
        ("aten::add", "aten::mul", "aten::div", "aten::sub", "aten::where", "aten::sum", "loss"),
    ),
)


def category(op: str) -> str:
    """The category of the operator named *op* (``other ops`` when none matches)."""
    name = op.lower()
    for label, patterns in CATEGORIES:
        if any(p in name for p in patterns):
            return label
    return "other ops"


def categories(prof, wall_ms: float) -> list[dict]:
    """Self CPU time per category, and *wall_ms* less all operators' self time as
    ``Python / autograd / framework`` (what runs outside any operator)."""
    totals: dict[str, float] = {}
    for e in prof.key_averages():
        if e.key.startswith("ProfilerStep"):
            continue
        label = category(e.key)
        totals[label] = totals.get(label, 0.0) + e.self_cpu_time_total / 1000
    totals["Python / autograd / framework"] = max(0.0, wall_ms - sum(totals.values()))
    whole = sum(totals.values()) or 1.0
    return [
        {"category": k, "ms": round(v, 1), "share": round(v / whole, 3)}
        for k, v in sorted(totals.items(), key=lambda kv: -kv[1])
    ]


def top_ops(prof, n: int) -> list[dict]:
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    ops = [e for e in events if not e.key.startswith("ProfilerStep")]  # the profiler's own marks
    rows = sorted(ops, key=lambda e: e.self_cpu_time_total, reverse=True)[:n]
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_ms": round(e.self_cpu_time_total / 1000, 1),
            "share": round(e.self_cpu_time_total / total, 3),
        }
        for e in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--train", type=int, default=160, help="training samples (5 steps of 32)")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: tunekit's)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import time

    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    import tunekit
    from tunekit.hardware import configure_threads
    from tunekit.trainer import Trainer

    configure_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    train, _ = rt_split(args.train, 0)
    options = dict(
        task="classify", eval_split=0, epochs=1, batch_size=32, max_length=128,
        precision=args.precision, progress=False,
    )  # fmt: skip
    tunekit.finetune(data=train[:32], **options)  # warm-up (imports, kernels)

    # profile the trainer's steps: wrap the optimizer step to advance the profiler schedule
    with profile(
        activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=1, active=100)
    ) as train_prof:
        original = Trainer._forward

        def forward(self, *a, **k):
            train_prof.step()
            return original(self, *a, **k)

        Trainer._forward = forward
        try:
            run = tunekit.finetune(data=train, **options)
        finally:
            Trainer._forward = original

    texts = mixed_texts(args.texts)
    run.predict(texts[:32])
    with profile(activities=[ProfilerActivity.CPU]) as predict_prof:
        start = time.perf_counter()
        run.predict(texts, batch_size=64)
        predict_ms = (time.perf_counter() - start) * 1000
    # the wall time of the profiled training steps: the profiler's step spans
    steps_ms = sum(
        e.cpu_time_total / 1000
        for e in train_prof.key_averages()
        if e.key.startswith("ProfilerStep")
    )

    result = {
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "train_top": top_ops(train_prof, args.top),
        "predict_top": top_ops(predict_prof, args.top),
        "train_categories": categories(train_prof, steps_ms),
        "predict_categories": categories(predict_prof, predict_ms),
    }
    if args.json:
        emit(result)
        return
    for name in ("train", "predict"):
        print(f"\n{name} ({args.precision}, {result['threads']} threads): top ops by self CPU time")
        for row in result[f"{name}_top"]:
            print(f"{row['share']:6.1%} {row['self_ms']:9.1f} ms {row['calls']:6d}×  {row['op']}")
        print(f"{name}: time per category")
        for row in result[f"{name}_categories"]:
            print(f"{row['share']:6.1%} {row['ms']:9.1f} ms  {row['category']}")


if __name__ == "__main__":
    main()
