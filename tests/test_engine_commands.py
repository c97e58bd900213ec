"""The MLX thread's commands are typed values handled by type, replies travel as values.

A real Worker thread, no model: what each command does, that a failing command never kills the
thread, and that nothing sent after Stop waits forever."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from salut_tui.config import Settings
from salut_tui.engine import errors
from salut_tui.engine.commands import Cancel
from salut_tui.engine.types import Error, GenerationRequest, ModelError
from salut_tui.engine.worker import Worker


@pytest.fixture
async def worker():
    w = Worker(Settings(), asyncio.get_running_loop())
    w.start()
    yield w
    w.stop(errors.shutting_down())
    await asyncio.to_thread(w.join)


def test_commands_are_frozen_values() -> None:
    cancel = Cancel(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cancel.key = 4  # type: ignore[misc]
    assert Cancel(3) == cancel


async def test_call_returns_its_value_or_its_exception(worker: Worker) -> None:
    assert await asyncio.wrap_future(worker.call(lambda: 6 * 7)) == 42
    with pytest.raises(ZeroDivisionError):
        await asyncio.wrap_future(worker.call(lambda: 1 / 0))
    assert await asyncio.wrap_future(worker.call(lambda: "still alive")) == "still alive"


async def test_submit_for_a_model_not_loaded_answers_with_an_error(worker: Worker) -> None:
    got: asyncio.Queue = asyncio.Queue()
    worker.submit(1, GenerationRequest("nobody/none", prompt="hi"), [1, 2], got.put_nowait)
    error = await asyncio.wait_for(got.get(), 5)
    assert isinstance(error, Error) and error.code == "model_not_found"
    worker.cancel(1)  # of a request that is not running: nothing happens
    await asyncio.wrap_future(worker.unload("nobody/none"))  # unloading nothing is fine


async def test_a_failing_load_fails_its_future_not_the_thread(
    worker: Worker, tmp_path: Path
) -> None:
    with pytest.raises(Exception):  # noqa: B017 - whatever mlx-lm raises for an empty dir
        await asyncio.wrap_future(worker.load("x/y", tmp_path, lambda f, s: None))
    assert await asyncio.wrap_future(worker.call(lambda: 1)) == 1


async def test_nothing_sent_after_stop_waits_forever() -> None:
    w = Worker(Settings(), asyncio.get_running_loop())
    w.start()
    final = Error("going away", code="bye", status=503)
    w.stop(final)
    got: asyncio.Queue = asyncio.Queue()
    w.submit(1, GenerationRequest("m", prompt="hi"), [1], got.put_nowait)
    late = [w.call(lambda: 1), w.unload("m"), w.load("m", Path("."), lambda f, s: None)]
    await asyncio.to_thread(w.join)
    assert await asyncio.wait_for(got.get(), 5) == final  # the Stop's error, not a "finish"
    for future in late:
        with pytest.raises(ModelError) as info:
            await asyncio.wrap_future(future)
        assert info.value.code == "engine_stopped"
