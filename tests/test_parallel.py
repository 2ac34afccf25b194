"""parallel_for's task index and per-task scratch (csrc/core/parallel.h): every item runs
once, task indices stay below the bound and are never shared by two tasks running at once,
per-task scratch is never touched by another task; also for calls that run inline (nested
in a pool thread, a second Python thread while the pool is busy) and while
set_num_threads changes the pool."""
from __future__ import annotations

import threading

import pytest

import lowbit
from lowbit import _C


@pytest.fixture
def threads():
    before = lowbit.get_num_threads()
    yield lowbit.set_num_threads
    lowbit.set_num_threads(before)


def check(r, bound):
    assert r["covered_once"]
    assert r["bad_tid"] == 0 and r["overlaps"] == 0 and r["corrupt"] == 0 and r["nested_bad"] == 0
    assert 0 <= r["max_tid"] < bound


@pytest.mark.parametrize("n,grain", [(1, 1), (7, 1), (1000, 1), (1000, 999), (1000, 1000), (100000, 64)])
def test_tids_bounded_and_unique(threads, n, grain):
    threads(4)
    r = _C._parallel_check(n, grain)
    check(r, 4)
    if n <= grain:
        assert r["max_tid"] == 0  # inline: one task


def test_max_tasks_caps_the_tasks(threads):
    threads(4)
    for cap in (1, 2, 3):
        check(_C._parallel_check(5000, 1, max_tasks=cap), cap)
    threads(1)
    check(_C._parallel_check(5000, 1), 1)


def test_nested_calls_are_one_task(threads):
    threads(3)
    check(_C._parallel_check(200, 1, nested=True), 3)


def test_scratch_is_per_task(threads):
    threads(4)
    r = _C._parallel_check(400, 1, scratch_bytes=4096)
    check(r, 4)
    assert r["slots"] == 4


def test_concurrent_callers_and_set_num_threads(threads):
    """Python threads call at once (all but one run inline, tid 0) while another thread
    changes the thread count: a call keeps the pool it started on and its scratch's bound."""
    threads(2)
    errors, stop = [], threading.Event()

    def work(i):
        try:
            while not stop.is_set():
                r = _C._parallel_check(300, 1, scratch_bytes=1024 if i % 2 else 0)
                check(r, r["slots"] or 4)  # pools of at most 4 threads here
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in workers:
        t.start()
    try:
        for k in range(40):
            lowbit.set_num_threads(1 + k % 4)
    finally:
        stop.set()
        for t in workers:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in workers)
    assert not errors, errors[0]
