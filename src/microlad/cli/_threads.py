"""Thread policy of the heavy commands (``train``, ``reconstruct``, ``demo``, ``properties``).

Rule, in order:

1. ``--threads N``: N threads.
2. ``$OMP_NUM_THREADS`` set: that many (torch reads it itself).
3. Otherwise ``max(1, min(cores - 1, cores - busy))``, with ``cores`` the CPUs this
   process may run on (``sched_getaffinity``) and ``busy`` the other runnable tasks on
   the machine right now (Linux ``/proc/loadavg``, median of a few samples; 0 where
   unavailable); a small problem (``small=True``) gets 1.

Why: OpenMP threads that wait at a barrier for a sibling that another process has
pushed off its core lose a whole scheduler time slice per barrier; torch's many small
operations then run many times slower than on one thread (BENCHMARKS.md, "Threads under
contention"). Leaving a core to the other work costs little on a quiet machine.
"""
from __future__ import annotations

import os
import statistics
import time

from microlad.errors import InputError

_SAMPLES = 5
_SAMPLE_GAP_S = 0.01


def available_cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def busy_cpus() -> int:
    """Other runnable tasks now (``/proc/loadavg`` field 4 less this process), or 0."""
    counts = []
    for i in range(_SAMPLES):
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(max(0, running - 1))
        if i + 1 < _SAMPLES:
            time.sleep(_SAMPLE_GAP_S)
    return int(statistics.median(counts))


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")


def default_threads(*, small: bool = False) -> int:
    """Rule 3 of the module docstring."""
    if small:
        return 1
    cores = available_cores()
    return max(1, min(cores - 1, cores - busy_cpus()))


def resolve_threads(threads: int | None, *, small: bool = False) -> int:
    """Threads to use: ``--threads``, else ``$OMP_NUM_THREADS``, else :func:`default_threads`."""
    check_threads(threads)
    if threads is not None:
        return threads
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return default_threads(small=small)


def apply_torch_threads(threads: int | None, *, small: bool = False) -> int:
    """Set torch's intra-op threads by the policy; returns the number used."""
    import torch

    n = resolve_threads(threads, small=small)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
