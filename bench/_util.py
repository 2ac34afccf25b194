"""Helpers shared by the benchmarks: timing and the memory-bandwidth yardstick."""
from __future__ import annotations

import time

import numpy as np

import lowbit
from lowbit import _C


def settle(seconds: float = 0.25) -> None:
    """Sleep long enough for other libraries' idle worker threads to stop spinning before a
    measurement: OpenBLAS threads busy-wait about 2^28 cycles (~0.1 s) after a call, OpenMP
    (torch) threads for a while too, and on a 2-core machine a spinning thread halves whatever
    runs next. lowbit's own workers spin for 0.2 ms."""
    time.sleep(seconds)


def median_time(fn, *args, repeat: int = 15, warmup: int = 2, min_time: float = 0.0) -> float:
    """Median wall time of fn(*args) in seconds."""
    for _ in range(warmup):
        fn(*args)
    times = []
    t_end = time.perf_counter() + min_time
    while len(times) < repeat or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def min_time(fn, *args, repeat: int = 15, warmup: int = 2, clock=time.perf_counter,
             min_seconds: float = 0.0) -> float:
    """Fastest of at least `repeat` calls (and of as many as fit in `min_seconds`): on a
    shared machine, the time without interference. On this project's 2-vCPU VMs a call
    right after a pause is often 2-3x slower than the next ones (caches and cores taken by
    other guests), so short calls need hundreds of tries for the undisturbed figure."""
    for _ in range(warmup):
        fn(*args)
    best = float("inf")
    n, t_end = 0, time.perf_counter() + min_seconds
    while n < repeat or time.perf_counter() < t_end:
        t0 = clock()
        fn(*args)
        best = min(best, clock() - t0)
        n += 1
    return best


def copy_bandwidth(nbytes: int = 256 << 20, repeat: int = 9) -> float:
    """Bytes moved per second (read + write) by a threaded memcpy of `nbytes` on lowbit's pool."""
    src = np.ones(nbytes, np.uint8)
    dst = np.empty_like(src)
    t = median_time(_C.parallel_copy, dst, src, repeat=repeat)
    return 2 * nbytes / t


def machine() -> str:
    info = lowbit.cpu_info()
    kernels = ", ".join(f"{f} {v}" for f, v in info["kernels"].items())
    return f"{info['brand']} ({info['vendor']}), kernels: {kernels}; {info['num_threads']} threads"


def activations(M: int, K: int) -> np.ndarray:
    """Fixed float32 activations (M, K) for the matmul benchmarks."""
    return np.random.default_rng(1).standard_normal((M, K)).astype(np.float32)
