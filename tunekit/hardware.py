"""What this machine offers the trainer: usable CPU threads and native bf16 arithmetic.

PyTorch starts one intra-op thread per physical core it sees, which in a container limited
by a CPU quota or an affinity mask can be far more cores than the process may use; the
threads then fight over the few CPUs it has. tunekit caps the count at the CPUs the
process can actually run on, unless the user chose (``num_threads=`` or
``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch

logger = logging.getLogger("tunekit")

#: environment variables through which a user sets the thread count themselves
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _cgroup_cpu_limit() -> float | None:
    """The CPU quota of this process's cgroup (v2 ``cpu.max`` or v1 ``cfs_quota``), in CPUs."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def usable_cpus() -> int:
    """CPUs this process may run on: the affinity mask, capped by a cgroup CPU quota.

    Example::

        usable_cpus()   # 2 in a container started with --cpus=2 on a 64-core host
    """
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op thread count and return it.

    *num_threads* given: exactly that. Otherwise, when neither ``OMP_NUM_THREADS`` nor
    ``MKL_NUM_THREADS`` is set, torch's default (one thread per physical core) is capped
    at :func:`usable_cpus`; a user-set variable is left alone.

    Example::

        configure_threads()    # e.g. 2 in a 2-CPU container, where torch would start 32
        configure_threads(4)   # 4
    """
    if num_threads:
        torch.set_num_threads(int(num_threads))
    elif not any(os.environ.get(v) for v in THREAD_VARIABLES):
        cap = usable_cpus()
        if torch.get_num_threads() > cap:
            logger.info("torch threads: %d → %d (CPUs usable here)", torch.get_num_threads(), cap)
            torch.set_num_threads(cap)
    return torch.get_num_threads()


def native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (x86 AVX512-BF16 or AMX); without it, bf16
    autocast on CPU is emulated and usually slower than fp32."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:
            continue
    return False


def is_main_process() -> bool:
    """Whether this process is the main one (rank 0 under ``torchrun`` / ``accelerate
    launch``; always true in a single process): only it writes bundles and reports."""
    try:
        from accelerate.state import PartialState

        # PartialState is process-wide and fixed by its first construction: built here
        # without cpu=True (as the trainer builds it), a CPU torchrun process would take
        # itself for a single process and every rank would report.
        return PartialState(cpu=not torch.cuda.is_available()).is_main_process
    except Exception:
        return True
