"""The ring's polling threads get a lower priority, and only the threads started after the
snapshot (the ones `mx.distributed.init` starts), never the caller's own."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from salut_tui.shard.ringthreads import ENV, RING_NICE, thread_ids, yield_ring_threads

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux threads")


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


def _nice(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def test_threads_started_after_the_snapshot_yield_and_older_ones_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    mine = _nice(threading.get_native_id())
    old, stop_old, old_tid = _started_thread()
    before = thread_ids()
    new, stop_new, new_tid = _started_thread()
    try:
        assert yield_ring_threads(before) == 1
        assert _nice(new_tid) == max(mine, RING_NICE)
        assert _nice(old_tid) == mine
        assert _nice(threading.get_native_id()) == mine
    finally:
        stop_old.set()
        stop_new.set()
        old.join()
        new.join()


def test_normal_leaves_every_thread_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "normal")
    before = thread_ids()
    thread, stop, tid = _started_thread()
    try:
        assert yield_ring_threads(before) == 0
        assert _nice(tid) == _nice(threading.get_native_id())
    finally:
        stop.set()
        thread.join()
