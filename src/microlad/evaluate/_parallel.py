"""Running the report's independent transport solves: in this process or forked workers.

How many workers: at most ``threads`` (the thread policy, ``microlad.cli._threads``),
1 when the other CPUs were busy while the descriptors were computed (``/proc/stat``), and
no more than the memory available holds: every worker builds its own operator and
multigrid hierarchy, ``bytes_per_cell`` per conducting cell (see
:data:`microlad.evaluate.properties.TRANSPORT_BYTES_PER_CELL`). Workers use 'fork'
(Linux); without it, for small inputs or if the pool fails, the solves run here. Each
task runs the same code on the same input wherever it runs, so results never depend on
the worker count.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence

import numpy as np

_log = logging.getLogger(__name__)

# below this many voxels the solves take well under a second: no worker processes
PARALLEL_MIN_VOXELS = 64**3

Task = tuple[int, int]  # (phase, axis)
Solver = Callable[..., tuple[float, float]]


def memory_available() -> int | None:
    """Bytes this process can still allocate: ``MemAvailable`` (``/proc/meminfo``),
    lowered by a cgroup v2 ``memory.max`` or an address-space rlimit; None if unknown."""
    limits: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            raw = f.read().strip()
        if raw.isdigit():
            with open("/sys/fs/cgroup/memory.current") as g:
                limits.append(int(raw) - int(g.read().strip()))
    except (OSError, ValueError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(soft - _vm_size())
    except (ImportError, OSError, ValueError):
        pass
    return max(0, min(limits)) if limits else None


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_sample() -> tuple[float, float] | None:
    """``(idle, total)`` CPU time of the whole machine (jiffies, all CPUs) from
    ``/proc/stat``; None where unavailable."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        vals = [float(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
        return vals[3] + vals[4], sum(vals)
    except (OSError, ValueError, IndexError):
        return None


def others_busy(before: tuple[float, float] | None) -> bool:
    """Whether less than half a CPU besides this process's was idle since ``before``
    (measured over at least 0.1 s of CPU time; otherwise, or without ``/proc/stat``,
    False)."""
    after = cpu_sample()
    if before is None or after is None:
        return False
    total = after[1] - before[1]
    if total < 10:  # jiffies, summed over the CPUs (USER_HZ = 100: 0.1 s)
        return False
    idle_cpus = (os.cpu_count() or 1) * (after[0] - before[0]) / total
    return idle_cpus < 0.5


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return []


_worker_cache = None  # a worker process's SetupCache (see _init_worker)


def _init_worker(cpus: list[int] | None, counter) -> None:
    """Pool initializer: a setup cache for this worker; pin the k-th worker to ``cpus[k]``.

    Pinning: with another busy process on the machine (3 runnable processes on 2 CPUs),
    Linux keeps that process alone on one CPU and stacks both workers on the other.
    """
    global _worker_cache
    from microlad.physics import SetupCache

    _worker_cache = SetupCache()
    if not cpus:
        return
    with counter.get_lock():
        k = counter.value
        counter.value += 1
    try:
        os.sched_setaffinity(0, {cpus[k % len(cpus)]})
    except (AttributeError, OSError):  # pragma: no cover - best effort
        pass


def _run_in_worker(solve: Solver, labels: np.ndarray, phase: int, axis: int) -> tuple[float, float]:
    return solve(labels, phase, axis, _worker_cache)


def _collect(tasks, futures, on_done) -> list[tuple[float, float]]:
    """The futures' results in task order, calling ``on_done(task)`` as each arrives."""
    results = []
    for t, f in zip(tasks, futures):
        results.append(f.result())
        if on_done is not None:
            on_done(t)
    return results


def solve_tasks(
    labels: np.ndarray,
    tasks: Sequence[Task],
    solve: Solver,
    *,
    workers: int,
    on_done: Callable[[Task], None] | None = None,
    threads: bool = False,
) -> list[tuple[float, float]]:
    """``solve(labels, phase, axis, cache)`` for every task, in ``workers`` forked
    processes when worthwhile (``solve`` must be a module-level function), else here.

    ``threads``: ``workers`` threads of this process instead (for solvers that release
    the GIL, e.g. the grid solver's compiled kernels; they share ``labels``).
    """
    workers = min(workers, len(tasks))
    if threads and workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return _collect(tasks, [pool.submit(solve, labels, p, i, None) for p, i in tasks], on_done)
    if workers > 1 and labels.size >= PARALLEL_MIN_VOXELS and "fork" in multiprocessing.get_all_start_methods():
        try:
            from microlad.physics import preload

            preload()  # import pyamg once here rather than in every worker
            ctx = multiprocessing.get_context("fork")
            cpus = _allowed_cpus()
            init = (cpus if len(cpus) == workers else None, ctx.Value("i", 0))
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
                return _collect(tasks, [pool.submit(_run_in_worker, solve, labels, p, i) for p, i in tasks], on_done)
        except Exception as exc:  # noqa: BLE001 - any pool failure: solve here instead
            _log.info("transport workers failed (%s: %s); solving in this process", type(exc).__name__, exc)
    from microlad.physics import SetupCache

    cache = SetupCache()
    results = []
    for p, i in tasks:
        results.append(solve(labels, p, i, cache))
        if on_done is not None:
            on_done((p, i))
    return results
