"""Stream events around one generation: StreamStarted, StreamTokensReceived per token, and
StreamFinished with its figures (time to first token, decode rate), whatever way it ends."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

from salut_tui.engine.types import Chunk, Error, Finish, GenerationRequest, Token
from salut_tui.events import EventBus, StreamFinished, StreamStarted, StreamTokensReceived

log = logging.getLogger(__name__)


async def with_stream_events(
    events: EventBus,
    request: GenerationRequest,
    served_by: str,
    chunks: AsyncGenerator[Chunk, None],
) -> AsyncGenerator[Chunk, None]:
    """`chunks`, unchanged, with the stream's events published; closing it closes `chunks`."""
    events.publish(
        StreamStarted(
            request.request_id,
            request.model,
            request.client,
            prompt_preview(request),
            time.time(),
            served_by,
        )
    )
    started = time.perf_counter()
    first_token_at: float | None = None
    completion_tokens = 0
    finish: Finish | Error | None = None
    try:
        async for chunk in chunks:
            if isinstance(chunk, Token):
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                completion_tokens += 1
                events.publish(
                    StreamTokensReceived(request.request_id, chunk.text, completion_tokens)
                )
            elif isinstance(chunk, Finish | Error):
                finish = chunk
            yield chunk
    finally:
        await chunks.aclose()
        elapsed = time.perf_counter() - started
        ttft = None if first_token_at is None else first_token_at - started
        decode_time = None if first_token_at is None else time.perf_counter() - first_token_at
        tps = completion_tokens / decode_time if decode_time and completion_tokens > 1 else None
        if isinstance(finish, Finish):
            reason, prompt_tokens, error = finish.reason, finish.usage.prompt_tokens, None
        elif isinstance(finish, Error):
            reason, prompt_tokens, error = "error", 0, finish.message
        else:
            reason, prompt_tokens, error = "cancelled", 0, None
        log.debug("request %s done in %.2fs (%s)", request.request_id, elapsed, reason)
        events.publish(
            StreamFinished(
                request.request_id, reason, prompt_tokens, completion_tokens, ttft, tps, error
            )
        )


def prompt_preview(request: GenerationRequest, limit: int = 120) -> str:
    if request.messages:
        text = str(request.messages[-1].get("content") or "")
    else:
        text = request.prompt or ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
