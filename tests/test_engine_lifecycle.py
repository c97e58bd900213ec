"""Cancelling, queue limits, context limits and shutdown, on the real engine thread."""

from __future__ import annotations

import asyncio

from salut_tui.engine.types import Error, Finish, GenerationRequest, SamplingParams, Token
from tests.engine_helpers import chat, collect, final, make_engine
from tests.helpers import seconds_until


async def test_closing_a_stream_stops_generation_in_the_thread(
    tmp_path, tiny_model_id, tiny_model_path
) -> None:
    engine, _ = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    await engine.load(tiny_model_id)
    try:
        stream = engine.generate(chat(tiny_model_id, max_tokens=480))
        received = [await stream.__anext__() for _ in range(3)]
        assert all(isinstance(c, Token) for c in received)
        assert engine.in_flight == 1
        await stream.aclose()  # what the API does when the client goes away
        # The thread confirms the cancel at its next step, long before the 480 tokens are done.
        await seconds_until(lambda: engine.in_flight == 0, timeout=1.0)
        stopped_at = engine.tokens_decoded
        assert stopped_at < 240
        await asyncio.sleep(0.3)  # a running generation would decode dozens of tokens here
        assert engine.tokens_decoded == stopped_at
        # The engine is still healthy afterwards.
        _, chunks = await collect(engine, chat(tiny_model_id, max_tokens=4))
        assert final(chunks).reason == "length"
    finally:
        await engine.stop()


async def test_full_queue_is_refused_with_503(tmp_path, tiny_model_id, tiny_model_path) -> None:
    engine, _ = make_engine(tmp_path, tiny_model_id, tiny_model_path, max_batch_size=1, max_queue=1)
    await engine.start()
    await engine.load(tiny_model_id)
    try:
        running = engine.generate(chat(tiny_model_id, max_tokens=480))
        await running.__anext__()  # decoding: it holds the only batch slot
        waiting = asyncio.ensure_future(collect(engine, chat(tiny_model_id, max_tokens=2)))
        await seconds_until(lambda: engine.queued == 1)
        _, refused = await collect(engine, chat(tiny_model_id))
        error = final(refused)
        assert isinstance(error, Error) and len(refused) == 1
        assert (error.status, error.code) == (503, "queue_full")
        await running.aclose()
        _, chunks = await waiting  # the waiting request is served once the slot frees
        assert final(chunks) == Finish("length", final(chunks).usage)
    finally:
        await engine.stop()


async def test_prompt_longer_than_context_is_400(tmp_path, tiny_model_id, tiny_model_path) -> None:
    engine, _ = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    await engine.load(tiny_model_id)
    try:
        long_text = " ".join(str(n) for n in range(600))
        _, chunks = await collect(
            engine, chat(tiny_model_id, ({"role": "user", "content": long_text},))
        )
        error = final(chunks)
        assert isinstance(error, Error)
        assert (error.status, error.code, error.param) == (
            400,
            "context_length_exceeded",
            "messages",
        )
        assert "512" in error.message
        # A prompt that fits but leaves little room is capped to the context, not refused.
        tokenizer = engine.tokenizer_for(tiny_model_id)
        prompt = " ".join(str(n) for n in range(200))
        room = 512 - len(tokenizer.encode(prompt))
        assert 0 < room < 200
        request = GenerationRequest(
            tiny_model_id, prompt=prompt, sampling=SamplingParams(temperature=0, max_tokens=400)
        )
        _, chunks = await collect(engine, request)
        assert final(chunks).usage.completion_tokens <= room
    finally:
        await engine.stop()


async def test_bad_requests_come_back_as_errors(tmp_path, tiny_model_id, tiny_model_path) -> None:
    engine, _ = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    await engine.load(tiny_model_id)
    try:
        empty = GenerationRequest(tiny_model_id, prompt="", sampling=SamplingParams(temperature=0))
        _, chunks = await collect(engine, empty)
        assert final(chunks).status == 400
        parts = ({"role": "user", "content": [{"type": "text", "text": "Hello"}]},)
        text, chunks = await collect(engine, chat(tiny_model_id, parts, max_tokens=6))
        plain, _ = await collect(engine, chat(tiny_model_id, max_tokens=6))
        assert text == plain  # content parts read as their text
        # Something mlx-lm rejects deep inside (the API validates first) ends that request only.
        _, chunks = await collect(engine, chat(tiny_model_id, repetition_penalty=-1.0))
        assert final(chunks).code == "internal_error"
        _, chunks = await collect(engine, chat(tiny_model_id, max_tokens=3))
        assert final(chunks).reason == "length"
    finally:
        await engine.stop()


async def test_stop_ends_in_flight_streams_with_a_shutdown_error(
    tmp_path, tiny_model_id, tiny_model_path
) -> None:
    engine, _ = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    await engine.load(tiny_model_id)
    streams = [engine.generate(chat(tiny_model_id, max_tokens=480)) for _ in range(3)]
    for stream in streams:
        assert isinstance(await stream.__anext__(), Token)
    await engine.stop()
    assert not engine._worker._thread.is_alive()
    for stream in streams:
        rest = [chunk async for chunk in stream]
        # Truncated by the shutdown: an error, never a finish that reads as a complete answer.
        assert isinstance(rest[-1], Error) and rest[-1].code == "server_shutting_down"
        assert rest[-1].status == 503
    _, chunks = await collect(engine, chat(tiny_model_id))
    assert final(chunks).status == 503  # a stopped engine refuses, it does not hang
    assert engine.in_flight == 0 and engine.queued == 0
