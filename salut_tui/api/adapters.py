"""Pure encoding of engine chunks (Token | Finish | Error) into OpenAI JSON and SSE bytes.

Nothing here does I/O, so the wire format is tested with synthetic chunks and no model. Two
dialects share the code: chat (`/v1/chat/completions`, object `chat.completion[.chunk]`,
`message`/`delta`) and text (`/v1/completions`, object `text_completion`, `text`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Literal

from salut_tui.engine.types import Chunk, Error, Finish, Token, Usage

Dialect = Literal["chat", "text"]

SSE_DONE = b"data: [DONE]\n\n"


def wire_finish_reason(reason: str) -> str:
    """OpenAI knows "stop" and "length"; a generation cancelled (node shutting down, client gone)
    ended normally from the client's point of view, so it reads "stop"."""
    return "length" if reason == "length" else "stop"


def usage_body(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def sse_event(payload: dict) -> bytes:
    """One server-sent event: a `data:` line holding compact JSON, then a blank line."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + text.encode("utf-8") + b"\n\n"


@dataclass(frozen=True, slots=True)
class Completion:
    """What every chunk of one response shares: id, creation time, model and dialect."""

    id: str
    created: int
    model: str
    dialect: Dialect

    @classmethod
    def new(cls, dialect: Dialect, model: str, request_id: str) -> Completion:
        prefix = "chatcmpl-" if dialect == "chat" else "cmpl-"
        return cls(prefix + request_id, int(time.time()), model, dialect)

    @property
    def object(self) -> str:
        return "chat.completion" if self.dialect == "chat" else "text_completion"

    @property
    def chunk_object(self) -> str:
        return "chat.completion.chunk" if self.dialect == "chat" else "text_completion"

    def _envelope(self, obj: str, choices: list[dict]) -> dict:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    # ---- regular (non-streaming) response --------------------------------------------
    def response(self, text: str, finish: Finish) -> dict:
        reason = wire_finish_reason(finish.reason)
        if self.dialect == "chat":
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": reason,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        body = self._envelope(self.object, [choice])
        body["usage"] = usage_body(finish.usage)
        return body

    # ---- streaming chunks ------------------------------------------------------------
    def chunk(
        self,
        *,
        content: str | None = None,
        role: bool = False,
        finish_reason: str | None = None,
    ) -> dict:
        """One streamed choice: a content delta, the opening role, or the closing reason."""
        if self.dialect == "chat":
            delta: dict = {}
            if role:
                delta["role"] = "assistant"
                delta["content"] = ""
            if content is not None:
                delta["content"] = content
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            text = content or ""
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope(self.chunk_object, [choice])

    def usage_chunk(self, usage: Usage) -> dict:
        """The extra last chunk of `stream_options.include_usage`: no choices, only usage."""
        body = self._envelope(self.chunk_object, [])
        body["usage"] = usage_body(usage)
        return body


class StreamEncoder:
    """Turns one generation's chunks into SSE bytes, in order, ending with `data: [DONE]`.

    `opening()` is sent once right after the headers (chat: the assistant role); `encode()` takes
    each chunk; after a Finish or an Error the stream is complete and `finished` is True.
    """

    def __init__(self, completion: Completion, *, include_usage: bool = False) -> None:
        self.completion = completion
        self.include_usage = include_usage
        self.finished = False

    def _event(self, payload: dict) -> bytes:
        if self.include_usage and "usage" not in payload:
            payload["usage"] = None  # OpenAI marks every non-final chunk this way
        return sse_event(payload)

    def opening(self) -> bytes:
        if self.completion.dialect != "chat":
            return b""
        return self._event(self.completion.chunk(role=True))

    def encode(self, chunk: Chunk) -> bytes:
        if self.finished:
            return b""
        if isinstance(chunk, Token):
            if not chunk.text:  # text held back while a stop string may be forming
                return b""
            return self._event(self.completion.chunk(content=chunk.text))
        self.finished = True
        if isinstance(chunk, Finish):
            out = self._event(self.completion.chunk(finish_reason=wire_finish_reason(chunk.reason)))
            if self.include_usage:
                out += sse_event(self.completion.usage_chunk(chunk.usage))
            return out + SSE_DONE
        return self.error(chunk)

    def error(self, error: Error) -> bytes:
        """An error after streaming began: an SSE error event, then [DONE]."""
        self.finished = True
        return sse_event(error.body()) + SSE_DONE
