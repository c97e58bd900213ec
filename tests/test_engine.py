"""Generation through the real engine thread on the tiny model: sampling, stops, usage, batching."""

from __future__ import annotations

import asyncio
import time

import pytest
from mlx_lm import generate as mlx_generate
from mlx_lm.utils import load_model, load_tokenizer

from salut_tui.engine.types import Error, Finish, GenerationRequest, SamplingParams, Token
from tests.engine_helpers import HELLO, chat, collect, final, make_engine


@pytest.fixture
async def engine(tmp_path, tiny_model_id, tiny_model_path):
    engine, _ = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    await engine.load(tiny_model_id)
    yield engine
    await engine.stop()


async def test_greedy_matches_mlx_lm_and_repeats(engine, tiny_model_id, tiny_model_path) -> None:
    text, chunks = await collect(engine, chat(tiny_model_id, max_tokens=24))
    again, _ = await collect(engine, chat(tiny_model_id, max_tokens=24))
    assert text == again
    model, config = load_model(tiny_model_path)
    tokenizer = load_tokenizer(tiny_model_path, eos_token_ids=config["eos_token_id"])
    prompt = tokenizer.apply_chat_template(list(HELLO), add_generation_prompt=True)
    assert text == mlx_generate(model, tokenizer, prompt, max_tokens=24)
    assert final(chunks) == Finish("length", final(chunks).usage)


async def test_raw_prompt_completion(engine, tiny_model_id) -> None:
    request = GenerationRequest(
        tiny_model_id,
        prompt="The quick brown",
        sampling=SamplingParams(temperature=0, max_tokens=8),
    )
    text, chunks = await collect(engine, request)
    tokenizer = engine.tokenizer_for(tiny_model_id)
    assert final(chunks).usage.prompt_tokens == len(tokenizer.encode("The quick brown"))
    assert text


async def test_same_seed_same_output_and_other_seeds_differ(engine, tiny_model_id) -> None:
    def sampled(seed: int) -> GenerationRequest:
        return chat(tiny_model_id, temperature=1.0, seed=seed, max_tokens=32)

    first, _ = await collect(engine, sampled(7))
    second, _ = await collect(engine, sampled(7))
    assert first == second
    others = {(await collect(engine, sampled(seed)))[0] for seed in (8, 9, 10)}
    assert first not in others
    # The seeded stream does not depend on what else is decoded in the same batch.
    crowd = [sampled(seed) for seed in (11, 12, 13)] + [sampled(7)]
    results = await asyncio.gather(*(collect(engine, r) for r in crowd))
    assert results[-1][0] == first


async def test_stop_string_spanning_tokens_is_not_emitted(engine, tiny_model_id) -> None:
    _, chunks = await collect(engine, chat(tiny_model_id, max_tokens=40))
    pieces = [c.text for c in chunks if isinstance(c, Token)]
    # Find two neighbouring pieces long enough to build a stop that straddles their boundary.
    index = next(
        i for i in range(len(pieces) - 1) if len(pieces[i]) >= 2 and len(pieces[i + 1]) >= 2
    )
    stop = pieces[index][-2:] + pieces[index + 1][:2]
    reference = "".join(pieces)
    text, stopped = await collect(engine, chat(tiny_model_id, max_tokens=40, stop=(stop,)))
    assert stop not in text
    assert text == reference[: reference.index(stop)]
    assert final(stopped).reason == "stop"
    assert final(stopped).usage.completion_tokens <= index + 2


async def test_max_tokens_gives_length_with_usage(engine, tiny_model_id) -> None:
    _, chunks = await collect(engine, chat(tiny_model_id, max_tokens=5))
    finish = final(chunks)
    tokenizer = engine.tokenizer_for(tiny_model_id)
    prompt = tokenizer.apply_chat_template(list(HELLO), add_generation_prompt=True)
    assert finish.reason == "length"
    assert finish.usage.prompt_tokens == len(prompt)
    assert finish.usage.completion_tokens == 5
    assert sum(isinstance(c, Token) for c in chunks) == 5


async def test_end_of_sequence_token_ends_with_stop(engine, tiny_model_id) -> None:
    # Find a prompt whose greedy continuation reaches the end-of-sequence token on this model.
    for n in range(40):
        request = GenerationRequest(
            tiny_model_id,
            prompt=f"Hello {n}",
            sampling=SamplingParams(temperature=0, max_tokens=60),
        )
        text, chunks = await collect(engine, request)
        if final(chunks).reason == "stop":
            break
    else:
        pytest.fail("no prompt reached end of sequence")
    assert "<|im_end|>" not in text
    assert final(chunks).usage.completion_tokens < 60


async def test_repetition_penalty_changes_greedy_output(engine, tiny_model_id) -> None:
    plain, _ = await collect(engine, chat(tiny_model_id, max_tokens=40))
    penalised, chunks = await collect(
        engine, chat(tiny_model_id, max_tokens=40, repetition_penalty=2.0)
    )
    assert isinstance(final(chunks), Finish)
    assert penalised != plain


async def test_top_p_sampling_runs_and_is_seeded(engine, tiny_model_id) -> None:
    request = chat(tiny_model_id, temperature=0.8, top_p=0.5, seed=3, max_tokens=16)
    first, chunks = await collect(engine, request)
    second, _ = await collect(engine, request)
    assert first == second and final(chunks).reason in ("length", "stop")


async def test_top_p_zero_is_greedy(engine, tiny_model_id) -> None:
    greedy, _ = await collect(engine, chat(tiny_model_id, temperature=0.0, max_tokens=24))
    for seed in (1, 2):
        text, _ = await collect(
            engine, chat(tiny_model_id, temperature=1.0, top_p=0.0, seed=seed, max_tokens=24)
        )
        assert text == greedy


async def test_concurrent_streams_are_batched(engine, tiny_model_id) -> None:
    """8 concurrent streams: aggregate tokens/s well above one stream's."""
    prompt = "Salut turns the machines on a LAN into one private inference cluster."

    def request() -> GenerationRequest:
        return GenerationRequest(
            tiny_model_id, prompt=prompt, sampling=SamplingParams(temperature=0, max_tokens=150)
        )

    await collect(engine, request())  # warm up
    began = time.perf_counter()
    _, chunks = await collect(engine, request())
    single = final(chunks).usage.completion_tokens / (time.perf_counter() - began)
    began = time.perf_counter()
    results = await asyncio.gather(*(collect(engine, request()) for _ in range(8)))
    elapsed = time.perf_counter() - began
    aggregate = sum(final(c).usage.completion_tokens for _, c in results) / elapsed
    assert all(text == results[0][0] for text, _ in results)  # same prompt, same greedy text
    assert aggregate > 2.0 * single, f"aggregate {aggregate:.0f} tok/s vs single {single:.0f} tok/s"
    assert engine.tokens_per_second() > 0


async def test_generate_unknown_model_is_404_error(engine) -> None:
    _, chunks = await collect(engine, chat("nobody/nothing"))
    error = final(chunks)
    assert isinstance(error, Error) and len(chunks) == 1
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")


async def test_repeated_prefix_is_served_from_the_prompt_cache(engine, tiny_model_id) -> None:
    worker = engine._worker
    first, chunks = await collect(engine, chat(tiny_model_id, max_tokens=12))
    assert worker.cached_prompt_tokens == 0
    again, again_chunks = await collect(engine, chat(tiny_model_id, max_tokens=12))
    prompt_tokens = final(chunks).usage.prompt_tokens
    assert (
        worker.cached_prompt_tokens == prompt_tokens - 1
    )  # all but the token decoding starts from
    assert again == first and final(again_chunks).usage == final(chunks).usage
    # A follow-up turn reuses the conversation so far and prefills only the new part.
    follow_up = (
        *HELLO,
        {"role": "assistant", "content": first},
        {"role": "user", "content": "More"},
    )
    before = worker.cached_prompt_tokens
    _, chunks = await collect(engine, chat(tiny_model_id, follow_up, max_tokens=4))
    assert worker.cached_prompt_tokens - before >= prompt_tokens
    assert final(chunks).reason in ("length", "stop")
