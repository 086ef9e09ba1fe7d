"""ONNX serving: the export (fp32, int8, int8-per-tensor) vs ``run.predict`` (torch) vs the length-sorted
transformers pipeline, on the embedded MiniLM classifier.

A MiniLM classifier with the pooler head (so the ``text-classification`` pipeline can serve
exactly the same weights: ``bench_inference.pipeline_model``) is fine-tuned briefly on
Rotten-Tomatoes snippets (or loaded from ``--bundle``), exported with
``run.export(dir, format="onnx")``, with ``quantize="int8"`` (per token) and ``"int8-per-tensor"`` (all gated on the held-out
split; the export's own figures are printed), then each side classifies the same texts of
mixed length (1 to 5 snippets joined), same max length, at every ``--batch-sizes`` value,
after a warm-up pass; ``--repeats`` rounds (at least 3) that alternate the order of the
sides, median and min-max reported, and each side is compared at its own best batch size
(the pipeline's best is the reference). The exports serve as ``load_onnx`` does by default
(one single-threaded run per CPU, side by side); one more row serves ``int8`` with
``workers=1, spin=True`` (every thread on one batch: the lowest latency for one request).
Label agreement is with ``run.predict``; the metric drop is the int8 gate's, on the
held-out split.

    python benchmarks/bench_onnx.py [--bundle DIR] [--texts 1000] [--repeats 3] [--batch-sizes 8,16,32,64]

With ``--bundle``, pass the ``--train`` size the bundle was trained with (default 1600):
the held-out split is the ``--held-out`` snippets after the first ``--train``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

from machine import cpu_line, load_average, machine_info, mixed_texts, rt_split, spread

#: logit-margin bins of the agreement table
MARGIN_BINS = ((0, 0.25), (0.25, 0.5), (0.5, 1), (1, 2), (2, 4), (4, math.inf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="a classify bundle with the pooler head")
    parser.add_argument(
        "--save", default=None, help="save the trained bundle here (reuse: --bundle)"
    )
    parser.add_argument("--train", type=int, default=1600, help="training snippets (no --bundle)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (no --bundle)")
    parser.add_argument("--held-out", type=int, default=1000, help="held-out labelled snippets")
    parser.add_argument("--texts", type=int, default=1000, help="mixed-length texts to classify")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--batch-sizes",
        type=lambda v: sorted(int(x) for x in v.split(",")),
        default=[8, 16, 32, 64],
        help="comma-separated batch sizes every side is measured at (each compared at its best)",
    )
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (a median of alternating rounds)")

    import attrs
    import torch
    from bench_inference import pipeline_model, sorted_pipeline_call
    from bench_train import POOLER_HEAD
    from transformers import pipeline

    import tunekit
    from tunekit.onnx_run import load_onnx

    info = machine_info()
    print("machine:", cpu_line(info))
    load = load_average()
    if load and load[0] > (os.cpu_count() or 1) / 2:
        print(f"note: load average {load[0]} on {os.cpu_count()} CPUs: figures measured under load")
    train, held_out = rt_split(args.train, args.held_out)
    if args.bundle:
        run = tunekit.load(args.bundle, device="cpu")
    else:
        start = time.perf_counter()
        # bf16 training (AMX) on short windows keeps this minutes on 2 cores; predictions
        # below are fp32 on every side
        run = tunekit.finetune(
            task="classify", data=train, eval_split=0, epochs=args.epochs, batch_size=32,
            learning_rate=5e-5, max_length=64, precision="bf16", progress=False, **POOLER_HEAD,
        )  # fmt: skip
        print(f"trained on {len(train)} snippets in {time.perf_counter() - start:.0f} s")
    run.precision = "fp32"
    run.training = attrs.evolve(run.training, max_length=args.max_length)
    if args.save and not args.bundle:
        run.save(args.save)
    texts = mixed_texts(args.texts)
    tmp = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    start = time.perf_counter()
    fp32_dir = run.export(tmp / "fp32", format="onnx", records=held_out)
    fp32_export_s = time.perf_counter() - start
    start = time.perf_counter()
    int8_dir = run.export(tmp / "int8", format="onnx", records=held_out, quantize="int8")
    int8_export_s = time.perf_counter() - start
    start = time.perf_counter()
    tensor_dir = run.export(
        tmp / "int8-per-tensor", format="onnx", records=held_out, quantize="int8-per-tensor"
    )
    tensor_export_s = time.perf_counter() - start
    tensor_info = json.loads((Path(tensor_dir) / "tunekit_onnx.json").read_text())
    fp32_info = json.loads((Path(fp32_dir) / "tunekit_onnx.json").read_text())
    int8_info = json.loads((Path(int8_dir) / "tunekit_onnx.json").read_text())
    print(f"export fp32 {fp32_export_s:.0f} s, parity: {fp32_info['parity']}")
    print(f"export int8 {int8_export_s:.0f} s, gate: {int8_info['quantization']}")
    print(f"export int8-per-tensor {tensor_export_s:.0f} s, gate: {tensor_info['quantization']}")
    print(f"sizes: {int8_info['size']}; int8-per-tensor {tensor_info['size']['int8_bytes']}")

    threads = torch.get_num_threads()
    fp32, int8, tensor = load_onnx(fp32_dir), load_onnx(int8_dir), load_onnx(tensor_dir)
    latency = load_onnx(int8_dir, workers=1, spin=True)
    print(
        f"onnx serving: {int8.workers} runs side by side x {int8.threads} thread(s) "
        f"(load_onnx default); the workers=1 row: 1 run x {latency.threads} threads, spinning"
    )
    pipe = pipeline(
        "text-classification",
        model=pipeline_model(run),
        tokenizer=run.tokenizer,
        device=-1,
        truncation=True,
        max_length=args.max_length,
    )
    sides = {
        "pipeline (length-sorted)": lambda bs: [
            r["label"]
            for r in sorted_pipeline_call(pipe, run.tokenizer, texts, bs, args.max_length)
        ],
        "run.predict (torch fp32)": lambda bs: run.predict(texts, batch_size=bs),
        "onnx fp32": lambda bs: fp32.predict(texts, batch_size=bs),
        "onnx int8": lambda bs: int8.predict(texts, batch_size=bs),
        "onnx int8-per-tensor": lambda bs: tensor.predict(texts, batch_size=bs),
        "onnx int8, workers=1 spin": lambda bs: latency.predict(texts, batch_size=bs),
    }
    for side in sides.values():  # warm-up: a full pass at the smallest and largest batch
        side(args.batch_sizes[0])
        side(args.batch_sizes[-1])
    # rounds alternate the order of the sides (forward, then backward), so a load change on
    # this shared machine hits every side alike instead of the ones measured last
    labels: dict[tuple[str, int], list] = {}
    seconds: dict[tuple[str, int], list[float]] = {}
    for round_ in range(args.repeats):
        for name in list(sides) if round_ % 2 == 0 else list(sides)[::-1]:
            for bs in args.batch_sizes:
                start = time.perf_counter()
                labels[name, bs] = sides[name](bs)
                seconds.setdefault((name, bs), []).append(time.perf_counter() - start)
    rates = {key: spread([len(texts) / s for s in value]) for key, value in seconds.items()}
    # each side at its own best batch size (the median of its rounds), as a careful user
    # would set it; the pipeline's best is the reference
    best = {
        name: max(args.batch_sizes, key=lambda bs, n=name: rates[n, bs]["median"]) for name in sides
    }
    torch_key = "run.predict (torch fp32)", best["run.predict (torch fp32)"]
    torch_predictions = labels[torch_key]
    labels = {k: [p["label"] if isinstance(p, dict) else p for p in v] for k, v in labels.items()}
    reference = labels[torch_key]
    base = rates["pipeline (length-sorted)", best["pipeline (length-sorted)"]]["median"]
    print(
        f"\n{len(texts)} mixed-length texts, max_length {args.max_length}, {threads} torch "
        f"threads, median of {args.repeats} alternating rounds [min-max] at batch sizes "
        f"{args.batch_sizes}; load average {load_average()}"
    )
    print("texts/s by batch size:")
    print(f"{'side':28} " + " ".join(f"{bs:>9}" for bs in args.batch_sizes))
    for name in sides:
        cells = " ".join(f"{rates[name, bs]['median']:9.1f}" for bs in args.batch_sizes)
        print(f"{name:28} {cells}")
    print("\nlabel agreement with run.predict by batch size (int8 scales depend on the batch):")
    for name in sides:
        cells = " ".join(
            f"{100 * sum(a == b for a, b in zip(labels[name, bs], reference)) / len(reference):8.1f}%"
            for bs in args.batch_sizes
        )
        print(f"{name:28} {cells}")
    print("\neach side at its best batch size:")
    header = f"{'side':28} {'batch':>5} {'texts/s':>10} {'[min-max]':>17} {'vs pipeline':>12}"
    print(f"{header} {'agreement':>10}")
    for name in sides:
        bs = best[name]
        r = rates[name, bs]
        agree = sum(a == b for a, b in zip(labels[name, bs], reference)) / len(reference)
        print(
            f"{name:28} {bs:5d} {r['median']:10.1f} [{r['min']:7.1f}-{r['max']:7.1f}] "
            f"{r['median'] / base:11.2f}x {100 * agree:9.2f}%"
        )
    labels = {name: labels[name, best[name]] for name in sides}
    # how sure the torch model was where int8 disagrees: the logit margin |z1 - z0| of its
    # top probability p is log(p / (1 - p)); near-ties flip under any perturbation
    margins = [
        math.log(max(p["score"], 0.5) / max(1 - p["score"], 1e-12)) for p in torch_predictions
    ]
    print("\nagreement with run.predict by its logit margin |z_top - z_other|:")
    print(f"{'margin':>12} {'texts':>6} " + " ".join(f"{n[5:]:>12}" for n in sides if "onnx" in n))
    for lo, hi in MARGIN_BINS:
        idx = [i for i, m in enumerate(margins) if lo <= m < hi]
        if not idx:
            continue
        cells = [
            f"{100 * sum(labels[n][i] == reference[i] for i in idx) / len(idx):11.1f}%"
            for n in sides
            if "onnx" in n
        ]
        print(f"{f'[{lo:g}, {hi:g})':>12} {len(idx):6d} " + " ".join(cells))
    print()
    for name, export in (("int8", int8_info), ("int8-per-tensor", tensor_info)):
        q = export["quantization"]
        print(
            f"held-out ({q['records']} snippets) {q['metric']}: torch {q['reference']:.4f}, {name} "
            f"{q['quantized']:.4f} (drop {q['drop_points']:.2f} points; gate max_drop "
            f"{q['max_drop']}); label agreement {100 * q['agreement']:.2f}%; "
            f"{export['size']['int8_bytes'] / 1e6:.1f} MB"
        )
    print(
        f"fp32: held-out label agreement {100 * fp32_info['parity']['agreement']:.2f}% (max "
        f"|Δlogit| {fp32_info['parity']['held_out_max_abs_diff']:.2e}), "
        f"{int8_info['size']['fp32_bytes'] / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
