"""ONNX serving: the export (fp32, int8, int8-per-token) vs ``run.predict`` (torch) vs the length-sorted
transformers pipeline, on the embedded MiniLM classifier.

A MiniLM classifier with the pooler head (so the ``text-classification`` pipeline can serve
exactly the same weights: ``bench_inference.pipeline_model``) is fine-tuned briefly on
Rotten-Tomatoes snippets (or loaded from ``--bundle``), exported with
``run.export(dir, format="onnx")``, with ``quantize="int8"`` and ``"int8-per-token"`` (all gated on the held-out
split; the export's own figures are printed), then each side classifies the same texts of
mixed length (1 to 5 snippets joined), same batch size and max length, after a warm-up
batch; ``--repeats`` rounds (at least 3) that alternate the order of the sides, median and
min-max reported. Label agreement is
with ``run.predict``; the metric drop is the int8 gate's, on the held-out split.

    python benchmarks/bench_onnx.py [--bundle DIR] [--texts 1000] [--repeats 3]

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
    parser.add_argument("--batch-size", type=int, default=64)
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
    token_dir = run.export(
        tmp / "int8-per-token", format="onnx", records=held_out, quantize="int8-per-token"
    )
    token_export_s = time.perf_counter() - start
    token_info = json.loads((Path(token_dir) / "tunekit_onnx.json").read_text())
    fp32_info = json.loads((Path(fp32_dir) / "tunekit_onnx.json").read_text())
    int8_info = json.loads((Path(int8_dir) / "tunekit_onnx.json").read_text())
    print(f"export fp32 {fp32_export_s:.0f} s, parity: {fp32_info['parity']}")
    print(f"export int8 {int8_export_s:.0f} s, gate: {int8_info['quantization']}")
    print(f"export int8-per-token {token_export_s:.0f} s, gate: {token_info['quantization']}")
    print(f"sizes: {int8_info['size']}; int8-per-token {token_info['size']['int8_bytes']}")

    threads = torch.get_num_threads()
    fp32, int8 = load_onnx(fp32_dir, threads=threads), load_onnx(int8_dir, threads=threads)
    token = load_onnx(token_dir, threads=threads)
    pipe = pipeline(
        "text-classification",
        model=pipeline_model(run),
        tokenizer=run.tokenizer,
        device=-1,
        truncation=True,
        max_length=args.max_length,
    )
    bs = args.batch_size
    sides = {
        "pipeline (length-sorted)": lambda: [
            r["label"]
            for r in sorted_pipeline_call(pipe, run.tokenizer, texts, bs, args.max_length)
        ],
        "run.predict (torch fp32)": lambda: run.predict(texts, batch_size=bs),
        "onnx fp32": lambda: fp32.predict(texts, batch_size=bs),
        "onnx int8": lambda: int8.predict(texts, batch_size=bs),
        "onnx int8-per-token": lambda: token.predict(texts, batch_size=bs),
    }
    warm = texts[:bs]
    pipe(warm, batch_size=bs)
    run.predict(warm, batch_size=bs)
    fp32.predict(warm, batch_size=bs)
    int8.predict(warm, batch_size=bs)
    token.predict(warm, batch_size=bs)
    # rounds alternate the order of the sides (forward, then backward), so a load change on
    # this shared machine hits every side alike instead of the ones measured last
    labels: dict[str, list] = {}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(args.repeats):
        for name in list(sides) if round_ % 2 == 0 else list(sides)[::-1]:
            start = time.perf_counter()
            labels[name] = sides[name]()
            seconds[name].append(time.perf_counter() - start)
    torch_predictions = labels["run.predict (torch fp32)"]
    labels = {n: [p["label"] if isinstance(p, dict) else p for p in v] for n, v in labels.items()}
    results = {
        name: {"labels": labels[name], "rates": spread([len(texts) / s for s in seconds[name]])}
        for name in sides
    }
    reference = results["run.predict (torch fp32)"]["labels"]
    base = results["pipeline (length-sorted)"]["rates"]["median"]
    print(
        f"\n{len(texts)} mixed-length texts, batch {bs}, max_length {args.max_length}, "
        f"{threads} threads (torch and onnxruntime), median of {args.repeats} alternating rounds "
        f"[min-max]; load average {load_average()}"
    )
    print(f"{'side':28} {'texts/s':>10} {'[min-max]':>17} {'vs pipeline':>12} {'agreement':>10}")
    for name, r in results.items():
        agree = sum(a == b for a, b in zip(r["labels"], reference)) / len(reference)
        rates = r["rates"]
        print(
            f"{name:28} {rates['median']:10.1f} [{rates['min']:7.1f}-{rates['max']:7.1f}] "
            f"{rates['median'] / base:11.2f}x {100 * agree:9.2f}%"
        )
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
    q = int8_info["quantization"]
    print(
        f"\nheld-out ({q['records']} snippets) {q['metric']}: torch {q['reference']:.4f}, int8 "
        f"{q['quantized']:.4f} (drop {q['drop_points']:.2f} points; gate max_drop {q['max_drop']}); "
        f"held-out label agreement int8 {100 * q['agreement']:.2f}%, fp32 "
        f"{100 * fp32_info['parity']['agreement']:.2f}% (max |Δlogit| "
        f"{fp32_info['parity']['held_out_max_abs_diff']:.2e})"
    )

    t = token_info["quantization"]
    print(
        f"held-out int8-per-token {t['quantized']:.4f} (drop {t['drop_points']:.2f} points), "
        f"label agreement {100 * t['agreement']:.2f}%; model sizes MB: fp32 "
        f"{int8_info['size']['fp32_bytes'] / 1e6:.1f}, int8 {int8_info['size']['int8_bytes'] / 1e6:.1f}, "
        f"int8-per-token {token_info['size']['int8_bytes'] / 1e6:.1f}"
    )


if __name__ == "__main__":
    main()
