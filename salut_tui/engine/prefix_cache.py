"""Per-model prompt (prefix) cache, built on mlx-lm's own LRUPromptCache.

A request whose prompt starts with tokens an earlier request already processed (a shared system
prompt, the earlier turns of a chat) only prefills the new tail: its KV cache starts from a copy
of the longest cached prefix. Finished requests leave their KV cache behind (prompt plus
completion), bounded in entries and bytes so it never crowds out the models themselves.
"""

from __future__ import annotations

from typing import Any

from mlx_lm.models.cache import LRUPromptCache, can_trim_prompt_cache, trim_prompt_cache

PROMPT_CACHE_ENTRIES = 10
PROMPT_CACHE_BYTES = 256 * 1024**2


class PrefixCache:
    def __init__(self, key: str) -> None:
        self._key = key  # LRUPromptCache can hold several models; each of ours holds one
        self._lru = LRUPromptCache(PROMPT_CACHE_ENTRIES, PROMPT_CACHE_BYTES)

    @property
    def nbytes(self) -> int:
        return self._lru.nbytes

    def fetch(self, prompt: list[int]) -> tuple[list[Any] | None, list[int]]:
        """A KV cache holding the longest known prefix of `prompt` (or None), and what is left
        to prefill (never empty: decoding starts by feeding the last prompt token)."""
        cache, rest = self._lru.fetch_nearest_cache(self._key, prompt)
        if cache is not None and not rest:
            if not can_trim_prompt_cache(cache):
                return None, prompt
            trim_prompt_cache(cache, 1)
            rest = prompt[-1:]
        return cache, rest

    def remember(self, tokens: list[int] | None, cache: list[Any] | None) -> None:
        """Keep the KV cache of `tokens` (what a finished request processed)."""
        if tokens and cache:
            self._lru.insert_cache(self._key, list(tokens), cache)
