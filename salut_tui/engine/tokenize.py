"""A request's prompt as token ids, computed off the MLX thread and without unbounded cost.

Three steps, cheapest first, each able to refuse a prompt that cannot fit the context:
1. its length in characters (`prompt.prompt_length_limit`): no tokenizer involved;
2. for a long prompt, a count in pieces of `PIECE_CHARS` characters, stopped as soon as the count
   is over the context: time and memory stay proportional to the context, not to the prompt, and
   a client that leaves stops it between two pieces (each piece is one awaited thread call);
3. the real tokenization of the whole prompt (chat template included), which mlx-lm will use.
Tokenizers release the GIL while they encode, so the event loop and the MLX thread run meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Any

from salut_tui.engine import errors
from salut_tui.engine.prompt import (
    encode_request,
    pieces,
    prompt_length,
    prompt_length_limit,
    prompt_param,
    prompt_texts,
)
from salut_tui.engine.types import Error, GenerationRequest, ModelError

# A prompt longer than this is counted in pieces before it is tokenized whole; shorter ones
# tokenize in well under a second.
COUNT_ABOVE_CHARS = 256 * 1024
PIECE_CHARS = 64 * 1024
# Tokens a cut between two pieces may add to the count (pieces are cut before whitespace, where
# the tokenizer splits words anyway): the count refuses only what is over the context by more.
SLACK_PER_PIECE = 8


async def tokenize_prompt(
    tokenizer: Any, request: GenerationRequest, context: int
) -> list[int] | Error:
    """The prompt's token ids, or the error that refuses it (too long, empty, bad messages)."""
    param = prompt_param(request)
    length, limit = prompt_length(request), prompt_length_limit(context)
    if length > limit:
        return errors.prompt_too_long_to_tokenize(length, context, limit, param)
    if length > COUNT_ABOVE_CHARS:
        over = await count_over_context(tokenizer, prompt_texts(request), context)
        if over is not None:
            return errors.context_length_exceeded(over, context, param, at_least=True)
    try:
        prompt = await asyncio.to_thread(encode_request, tokenizer, request)
    except ModelError as exc:
        return exc.to_error()
    if not prompt:
        return Error("the prompt is empty", "invalid_request_error", None, 400, "prompt")
    if len(prompt) >= context:
        return errors.context_length_exceeded(len(prompt), context, param)
    return prompt


async def count_over_context(tokenizer: Any, texts: list[str], context: int) -> int | None:
    """Count the texts' tokens piece by piece; the count once it is surely over `context`
    (counting stops there), or None when the whole text may fit."""
    count = cuts = 0
    for text in texts:
        for piece in pieces(text, PIECE_CHARS):
            ids = await asyncio.to_thread(tokenizer.encode, piece, add_special_tokens=False)
            count += len(ids)
            cuts += 1
            if count - SLACK_PER_PIECE * cuts >= context:
                return count - SLACK_PER_PIECE * cuts
    return None
