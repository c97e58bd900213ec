"""Per-request samplers and logits processors for mlx-lm's BatchGenerator.

BatchGenerator samples the whole batch in one call when every row shares the same sampler object
(None means its greedy fallback), and calls each row's own sampler on its slice otherwise. So a
greedy request returns None (the fast shared path), and a sampled request gets a closure holding
its own PRNG key, split once per step: the draws of one request never depend on what else is in
the batch, which is what makes `seed` reproducible under concurrent load.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import mlx.core as mx
from mlx_lm.sample_utils import apply_top_p, make_logits_processors

from salut_tui.engine.types import SamplingParams

Sampler = Callable[[mx.array], mx.array]
LogitsProcessor = Callable[[mx.array, mx.array], mx.array]


def build_sampler(params: SamplingParams) -> Sampler | None:
    """None for greedy decoding (temperature 0, or top_p 0: a nucleus of only the most likely
    token, as OpenAI treats it), else a seeded categorical sampler."""
    if params.temperature <= 0.0 or params.top_p <= 0.0:
        return None
    seed = params.seed if params.seed is not None else secrets.randbits(63)
    return KeyedSampler(seed, params.temperature, params.top_p)


class KeyedSampler:
    """Temperature + nucleus sampling driven by a request-owned PRNG key."""

    def __init__(self, seed: int, temperature: float, top_p: float) -> None:
        self._key = mx.random.key(seed % 2**64)  # clients may send negative or huge seeds
        self._inv_temp = 1.0 / temperature
        self._top_p = top_p

    def __call__(self, logprobs: mx.array) -> mx.array:
        self._key, step_key = mx.random.split(self._key)
        if 0.0 < self._top_p < 1.0:
            logprobs = apply_top_p(logprobs, self._top_p)
        return mx.random.categorical(logprobs * self._inv_temp, key=step_key)


def build_logits_processors(params: SamplingParams) -> list[LogitsProcessor]:
    """mlx-lm's repetition penalty; none at all for the neutral 1.0 (it would cost a pass)."""
    if params.repetition_penalty == 1.0:
        return []
    return make_logits_processors(repetition_penalty=params.repetition_penalty)


class ForcedTokens:
    """A logits processor that makes the model produce exactly `tokens`, then the last one
    forever (an end-of-sequence token ends it first). It drives the real decoding, detokenizing
    and tool-call parsing with a scripted answer: `Engine.script_next`, for tests and demos."""

    def __init__(self, tokens: tuple[int, ...]) -> None:
        self._tokens = tokens
        self._at = 0

    def __call__(self, context: mx.array, logits: mx.array) -> mx.array:
        token = self._tokens[min(self._at, len(self._tokens) - 1)]
        self._at += 1
        wanted = mx.arange(logits.shape[-1]) == token
        mask = mx.where(wanted, mx.array(0.0, logits.dtype), mx.array(-mx.inf, logits.dtype))
        return mx.broadcast_to(mask, logits.shape)
