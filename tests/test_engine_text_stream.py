"""TextStream: token ids to text chunks with the tiny model's real tokenizer (no MLX compute)."""

from __future__ import annotations

import pytest
from mlx_lm.utils import load_tokenizer

from salut_tui.engine.text_stream import TextStream


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    return load_tokenizer(tiny_model_path)


def feed(stream: TextStream, tokens: list[int], last_reason: str | None = None):
    texts, ended = [], None
    for i, token in enumerate(tokens):
        reason = last_reason if i == len(tokens) - 1 else None
        chunk, ended = stream.step(token, reason)
        texts.append(chunk.text if chunk else None)
        if ended:
            break
    return texts, ended


def test_plain_text_one_chunk_per_token(tokenizer) -> None:
    tokens = tokenizer.encode("Hello world! How are you today?")
    stream = TextStream(tokenizer.detokenizer, (), prompt_tokens=3)
    texts, ended = feed(stream, tokens)
    assert ended is None and len(texts) == len(tokens)
    assert "".join(texts) == "Hello world! How are you today?"
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (3, len(tokens))


def test_stop_string_across_tokens_is_cut(tokenizer) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    tokens = tokenizer.encode(text)
    stream = TextStream(tokenizer.detokenizer, ("own fox j",), prompt_tokens=1)
    texts, ended = feed(stream, tokens)
    assert ended == "stop"
    assert "".join(t for t in texts if t) == "The quick br"
    assert stream.usage.completion_tokens < len(tokens)


def test_length_flushes_text_held_for_a_possible_stop(tokenizer) -> None:
    tokens = tokenizer.encode("Hello wor")
    stream = TextStream(tokenizer.detokenizer, "world peace", prompt_tokens=1)
    texts, ended = feed(stream, tokens, last_reason="length")
    assert ended == "length"
    assert "".join(t for t in texts if t) == "Hello wor"


def test_end_of_sequence_is_not_text_nor_counted(tokenizer) -> None:
    tokens = [*tokenizer.encode("Hello"), next(iter(tokenizer.eos_token_ids))]
    stream = TextStream(tokenizer.detokenizer, (), prompt_tokens=1)
    texts, ended = feed(stream, tokens, last_reason="stop")
    assert ended == "stop"
    assert "".join(t for t in texts if t) == "Hello"
    assert stream.usage.completion_tokens == len(tokens) - 1
