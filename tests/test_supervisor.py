"""Background tasks are supervised: a failing loop is logged and restarted, one-shot failures
are logged, and stop() ends everything."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from salut_tui.supervisor import Supervisor
from tests.helpers import until
from tests.test_cluster_node import make


async def test_a_raising_loop_is_logged_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    steady = asyncio.Event()

    async def loop() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("first run breaks")
        steady.set()
        await asyncio.sleep(3600)

    supervisor = Supervisor("test", first_backoff=0.01)
    with caplog.at_level(logging.ERROR, logger="salut_tui.supervisor"):
        supervisor.keep_running(loop, name="looper")
        await asyncio.wait_for(steady.wait(), 5)
    assert runs == [0, 1] and supervisor.restarts == {"looper": 1}
    failure = [r for r in caplog.records if "looper raised" in r.getMessage()]
    assert failure and failure[0].exc_info and "first run breaks" in str(failure[0].exc_info[1])
    await supervisor.stop()


async def test_a_loop_that_ends_is_restarted_too() -> None:
    ends: list[int] = []

    async def loop() -> None:
        ends.append(1)

    supervisor = Supervisor("test", first_backoff=0.01, max_backoff=0.02)
    supervisor.keep_running(loop, name="quitter")
    await until(lambda: len(ends) >= 5)
    await supervisor.stop()
    assert supervisor.restarts["quitter"] >= 4


async def test_one_shot_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise ValueError("nope")

    supervisor = Supervisor("test")
    with caplog.at_level(logging.ERROR, logger="salut_tui.supervisor"):
        await supervisor.spawn(broken(), name="once")
    assert any("once failed" in r.getMessage() for r in caplog.records)
    await supervisor.stop()


async def test_stop_cancels_and_waits() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.set()

    supervisor = Supervisor("test")
    supervisor.keep_running(forever, name="forever")
    await asyncio.sleep(0)
    await supervisor.stop()
    assert cancelled.is_set()


async def test_the_clusters_dial_loop_survives_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    node = make(tmp_path, "A")
    await node.start()
    try:
        cluster = node.cluster
        assert cluster is not None
        real = cluster.trust.all
        calls: list[int] = []

        def failing_once():  # type: ignore[no-untyped-def]
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("trust store hiccup")
            return real()

        monkeypatch.setattr(cluster.trust, "all", failing_once)
        with caplog.at_level(logging.ERROR, logger="salut_tui.supervisor"):
            await until(lambda: len(calls) >= 3)  # the loop runs again after the failure
        assert cluster._tasks.restarts == {"dial loop": 1}
        assert any("dial loop raised" in r.getMessage() for r in caplog.records)
    finally:
        await node.stop()
