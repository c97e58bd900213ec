"""The ring's polling threads are moved to SCHED_IDLE, and only the threads started after the
snapshot (the ones `mx.distributed.init` starts), never the caller's own."""

from __future__ import annotations

import os
import threading

import pytest

from salut_tui.shard.ringthreads import ENV, thread_ids, yield_ring_threads

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling class")


def _started_thread() -> tuple[threading.Thread, threading.Event, int]:
    stop = threading.Event()
    ready = threading.Event()
    tid: list[int] = []

    def run() -> None:
        tid.append(threading.get_native_id())
        ready.set()
        stop.wait()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait()
    return thread, stop, tid[0]


def test_threads_started_after_the_snapshot_yield_and_older_ones_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    old, stop_old, old_tid = _started_thread()
    before = thread_ids()
    new, stop_new, new_tid = _started_thread()
    try:
        assert yield_ring_threads(before) == 1
        assert os.sched_getscheduler(new_tid) == os.SCHED_IDLE
        assert os.sched_getscheduler(old_tid) == os.SCHED_OTHER
        assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER
    finally:
        stop_old.set()
        stop_new.set()
        old.join()
        new.join()


def test_normal_keeps_every_thread_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "normal")
    before = thread_ids()
    thread, stop, tid = _started_thread()
    try:
        assert yield_ring_threads(before) == 0
        assert os.sched_getscheduler(tid) == os.SCHED_OTHER
    finally:
        stop.set()
        thread.join()
