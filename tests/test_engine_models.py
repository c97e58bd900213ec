"""Loading and unloading models at run time: events, memory accounting, refusals."""

from __future__ import annotations

import asyncio

import mlx.core as mx
import pytest

from salut_tui.engine.types import Error, ModelError
from salut_tui.events import (
    ModelLoaded,
    ModelLoadFailed,
    ModelLoadProgressed,
    ModelLoadStarted,
    ModelUnloaded,
)
from tests.engine_helpers import chat, collect, final, make_engine


async def test_load_reports_progress_in_order(tmp_path, tiny_model_id, tiny_model_path) -> None:
    engine, seen = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    try:
        info = await engine.load(tiny_model_id)
        kinds = [type(e) for e in seen]
        assert kinds[0] is ModelLoadStarted and kinds[-1] is ModelLoaded
        progress = [e.fraction for e in seen if isinstance(e, ModelLoadProgressed)]
        assert len(progress) >= 3
        assert progress == sorted(progress) and progress[-1] == 1.0
        assert any(0.0 < f < 1.0 for f in progress)  # real intermediate steps, not just 0 and 1
        assert seen[-1] == ModelLoaded(tiny_model_id, info.memory_bytes)
        assert info.context_length == 512 and info.path == tiny_model_path
        assert info.memory_bytes > 0 and info.size_bytes >= info.memory_bytes
        assert engine.loaded() == [info] and engine.is_loaded(tiny_model_id)
        # Loading again returns the same info and publishes nothing.
        count = len(seen)
        assert await engine.load(tiny_model_id) is info
        assert len(seen) == count
    finally:
        await engine.stop()


async def test_concurrent_loads_of_one_model_share_the_work(
    tmp_path, tiny_model_id, tiny_model_path
) -> None:
    engine, seen = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    try:
        first, second = await asyncio.gather(engine.load(tiny_model_id), engine.load(tiny_model_id))
        assert first is second
        assert sum(isinstance(e, ModelLoadStarted) for e in seen) == 1
    finally:
        await engine.stop()


async def test_unknown_model_load_is_404(tmp_path, tiny_model_id, tiny_model_path) -> None:
    engine, seen = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    try:
        with pytest.raises(ModelError) as err:
            await engine.load("nobody/nothing")
        assert (err.value.status, err.value.code) == (404, "model_not_found")
        assert isinstance(seen[-1], ModelLoadFailed)
        assert engine.loaded() == []
    finally:
        await engine.stop()


async def test_load_that_does_not_fit_is_refused_unless_forced(
    tmp_path, tiny_model_id, tiny_model_path
) -> None:
    # Headroom larger than any machine's memory: nothing fits.
    engine, seen = make_engine(tmp_path, tiny_model_id, tiny_model_path, memory_headroom_gb=1e6)
    await engine.start()
    try:
        with pytest.raises(ModelError) as err:
            await engine.load(tiny_model_id)
        assert (err.value.status, err.value.code) == (507, "insufficient_memory")
        assert "GiB" in err.value.message
        assert not engine.is_loaded(tiny_model_id)
        assert isinstance(seen[-1], ModelLoadFailed)
        info = await engine.load(tiny_model_id, force=True)
        assert engine.loaded() == [info]
    finally:
        await engine.stop()


async def test_fit_check_uses_available_memory(
    tmp_path, tiny_model_id, tiny_model_path, monkeypatch
) -> None:
    from salut_tui.engine import engine as engine_module
    from salut_tui.engine.memory import MemoryStatus, estimate_model_bytes

    needed = estimate_model_bytes(tiny_model_path)
    engine, _ = make_engine(tmp_path, tiny_model_id, tiny_model_path, memory_headroom_gb=0)
    monkeypatch.setattr(
        engine_module, "memory_status", lambda: MemoryStatus(10 * needed, needed - 1)
    )
    await engine.start()
    try:
        with pytest.raises(ModelError) as err:
            await engine.load(tiny_model_id)
        assert err.value.code == "insufficient_memory"
        monkeypatch.setattr(
            engine_module, "memory_status", lambda: MemoryStatus(10 * needed, needed)
        )
        await engine.load(tiny_model_id)
    finally:
        await engine.stop()


async def test_unload_frees_memory_and_ends_streams(
    tmp_path, tiny_model_id, tiny_model_path
) -> None:
    engine, seen = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    try:
        mx.clear_cache()
        before = mx.get_active_memory()
        info = await engine.load(tiny_model_id)
        assert mx.get_active_memory() - before >= info.memory_bytes
        stream = engine.generate(chat(tiny_model_id, max_tokens=400))
        await stream.__anext__()
        await engine.unload(tiny_model_id)
        rest = [chunk async for chunk in stream]
        assert isinstance(rest[-1], Error) and rest[-1].code == "model_unloaded"
        assert isinstance(seen[-1], ModelUnloaded)
        assert engine.loaded() == [] and not engine.is_loaded(tiny_model_id)
        assert engine.in_flight == 0 and engine.queued == 0
        assert mx.get_active_memory() - before < info.memory_bytes / 2
        _, chunks = await collect(engine, chat(tiny_model_id))
        assert final(chunks).code == "model_not_found"
        with pytest.raises(ModelError) as err:
            await engine.unload(tiny_model_id)
        assert err.value.status == 404
    finally:
        await engine.stop()


async def test_two_models_loaded_side_by_side(tmp_path, tiny_model_id, tiny_model_path) -> None:
    engine, _ = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    engine.settings.models = {**engine.settings.models, "other/tiny": str(tiny_model_path)}
    await engine.start()
    try:
        await engine.load(tiny_model_id)
        await engine.load("other/tiny")
        assert {m.model_id for m in engine.loaded()} == {tiny_model_id, "other/tiny"}
        a, b = await asyncio.gather(
            collect(engine, chat(tiny_model_id, max_tokens=10)),
            collect(engine, chat("other/tiny", max_tokens=10)),
        )
        assert a[0] == b[0]  # same weights, same greedy text, served by two generators
    finally:
        await engine.stop()
