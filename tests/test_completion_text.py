"""/v1/completions continues its prompt exactly as the tokens say: the first token's leading space
is text ("The sky is" + " a canvas"), where mlx-lm's streaming detokenizer drops it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlx_lm.utils import load_tokenizer

from salut_tui.engine.text_stream import TextStream, continuation_detokenizer
from salut_tui.engine.types import GenerationRequest, SamplingParams, Token
from tests.engine_helpers import collect, make_engine


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    return load_tokenizer(tiny_model_path)


def stream_text(detokenizer, ids: list[int]) -> str:
    text = TextStream(detokenizer, (), prompt_tokens=3)
    out = []
    for i, token in enumerate(ids):
        chunk, _ = text.step(token, "length" if i == len(ids) - 1 else None)
        if chunk is not None:
            out.append(chunk.text)
    return "".join(out)


@pytest.mark.parametrize("continuation", [" a canvas of colors", " 42", "\nHello world", "x = 1"])
def test_a_continuation_keeps_its_leading_space(tokenizer, continuation: str) -> None:
    ids = tokenizer.encode(continuation, add_special_tokens=False)
    assert stream_text(continuation_detokenizer(tokenizer), ids) == continuation


def test_a_chat_answer_still_starts_without_the_space(tokenizer) -> None:
    ids = tokenizer.encode(" Hello there", add_special_tokens=False)
    assert stream_text(tokenizer.detokenizer, ids) == "Hello there"


@pytest.mark.parametrize("prompt", ["The sky is", "Hello", "def main():", "Numbers: 0 1"])
async def test_completion_text_is_the_decoded_tokens(
    tmp_path, tiny_model_id, tiny_model_path, tokenizer, prompt: str
) -> None:
    engine, _ = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    try:
        await engine.load(tiny_model_id)
        request = GenerationRequest(
            tiny_model_id, prompt=prompt, sampling=SamplingParams(temperature=0.0, max_tokens=12)
        )
        text, chunks = await collect(engine, request)
    finally:
        await engine.stop()
    ids = [c.token_id for c in chunks if isinstance(c, Token) and c.token_id is not None]
    assert text == tokenizer.decode(ids)
