"""Where the time goes: ``torch.profiler`` top operators of tunekit training steps and of
``run.predict``, on the embedded MiniLM with Rotten-Tomatoes snippets.

Training: a few steps of the real trainer (``tunekit.finetune``, full fine-tune), profiled
after a warm-up step; predict: ``run.predict`` on mixed-length texts. Prints a table of
the top operators by self CPU time, or with ``--json`` emits them for ``run_all.py``.

    python benchmarks/profile_ops.py [--precision bf16] [--top 12]
"""

from __future__ import annotations

import argparse

from machine import emit, mixed_texts, rt_split


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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from torch.profiler import ProfilerActivity, profile, schedule

    import tunekit
    from tunekit.hardware import configure_threads
    from tunekit.trainer import Trainer

    configure_threads()
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
        run.predict(texts, batch_size=64)

    result = {
        "precision": args.precision,
        "train_top": top_ops(train_prof, args.top),
        "predict_top": top_ops(predict_prof, args.top),
    }
    if args.json:
        emit(result)
        return
    for name in ("train_top", "predict_top"):
        print(f"\n{name.replace('_top', '')} ({args.precision}): top ops by self CPU time")
        for row in result[name]:
            print(f"{row['share']:6.1%} {row['self_ms']:9.1f} ms {row['calls']:6d}×  {row['op']}")


if __name__ == "__main__":
    main()
