"""``hardware.pin_mmap_threshold`` pins glibc's mmap threshold: afterwards a block the
heap cannot serve gets its own mapping (given back to the OS when freed) where glibc's
default would have grown the heap, and the losses are the same as without the pin. The
memory saved is measured in benchmarks/bench_memory.py, not here. The check runs in a fresh
process, since the setting is process-wide and cannot be undone."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from tunekit.testing import make_tiny_model

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's allocator only",
)

CHILD = textwrap.dedent(
    """
    import ctypes, json, sys
    import tunekit
    from tunekit import hardware

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def mapped():
        # a block larger than all the heap's free memory: glibc must extend the heap or map it
        info = libc.mallinfo2()
        size, before = info.fordblks + (1 << 20), info.hblkhd
        block = libc.malloc(size)
        after = libc.mallinfo2().hblkhd
        libc.free(block)
        return after - before >= size

    libc.free(libc.malloc(30 << 20))  # glibc's default raises its threshold to 30 MiB
    rows = [{"text": t, "label": t.split()[0]} for t in
            ["good film", "bad film", "good plot", "bad plot"] * 6]
    opts = dict(task="classify", model=sys.argv[1], data=rows, eval_split=0, epochs=2,
                batch_size=4, max_length=16, precision="fp32", progress=False)
    plain = tunekit.finetune(**opts).history.rows
    out = {"heap_before": not mapped()}
    out["pinned"] = hardware.pin_mmap_threshold()
    pinned = tunekit.finetune(**opts).history.rows
    out["mapped_after"] = mapped()
    out["same_losses"] = [r["train_loss"] for r in plain] == [r["train_loss"] for r in pinned]
    out["losses"] = [r["train_loss"] for r in pinned]
    print("RESULT " + json.dumps(out))
    """
)


def test_pinned_threshold_maps_blocks_and_keeps_the_losses(tmp_path):
    model = make_tiny_model(tmp_path / "tiny", ["good bad film plot"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, model], capture_output=True, text=True, env=env, timeout=300
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, out.stderr[-3000:]
    result = json.loads(line[len("RESULT ") :])
    assert result["pinned"]
    assert result["heap_before"]  # without the pin, a new block came from the heap
    assert result["mapped_after"]  # pinned: its own mapping
    assert result["same_losses"], result["losses"]
    assert len(result["losses"]) == 2 and all(loss > 0 for loss in result["losses"])


def test_a_user_threshold_is_left_alone(monkeypatch):
    from tunekit import hardware

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    monkeypatch.setattr(hardware, "_mmap_pinned", False)
    calls = []
    monkeypatch.setattr("ctypes.CDLL", lambda *a, **k: calls.append(a))
    assert hardware.pin_mmap_threshold()
    assert not calls  # glibc never asked
