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

from salut_tui.api.logprobs import TextOffsets, chat_logprobs
from salut_tui.api.tools import delta_tool_calls, message_tool_call
from salut_tui.engine.types import Chunk, Error, Finish, Token, TokenLogprob, ToolCall, Usage

Dialect = Literal["chat", "text"]

SSE_DONE = b"data: [DONE]\n\n"


def wire_finish_reason(reason: str) -> str:
    """OpenAI knows "stop", "length" and "tool_calls"; a generation cancelled (node shutting down,
    client gone) ended normally from the client's point of view, so it reads "stop"."""
    return reason if reason in ("length", "tool_calls") else "stop"


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

    def logprobs_body(self, items: list[TokenLogprob] | None, offsets: TextOffsets) -> dict | None:
        if items is None:
            return None
        return chat_logprobs(items) if self.dialect == "chat" else offsets.legacy(items)

    # ---- regular (non-streaming) response --------------------------------------------
    def response(
        self,
        text: str,
        finish: Finish,
        *,
        tool_calls: list[ToolCall] | None = None,
        logprobs_of: list[TokenLogprob] | None = None,
        echo: str = "",
    ) -> dict:
        """The whole answer; `echo` (text completions) is the prompt, put before the text."""
        reason = wire_finish_reason(finish.reason)
        logprobs = self.logprobs_body(logprobs_of, TextOffsets(len(echo)))
        text = echo + text
        if self.dialect == "chat":
            message: dict = {"role": "assistant", "content": text}
            if tool_calls:
                message["content"] = text or None  # OpenAI: null content beside tool calls
                message["tool_calls"] = [message_tool_call(c) for c in tool_calls]
            choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": reason}
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
        tool_calls: list[dict] | None = None,
        logprobs: dict | None = None,
    ) -> dict:
        """One streamed choice: a content delta, the opening role, tool-call fragments, or the
        closing reason."""
        if self.dialect == "chat":
            delta: dict = {}
            if role:
                delta["role"] = "assistant"
                delta["content"] = ""
            if content is not None:
                delta["content"] = content
            if tool_calls is not None:
                delta["tool_calls"] = tool_calls
            choice = {
                "index": 0,
                "delta": delta,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
        else:
            text = content or ""
            choice = {
                "index": 0,
                "text": text,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
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

    def __init__(
        self,
        completion: Completion,
        *,
        include_usage: bool = False,
        logprobs: bool = False,
        echo: str = "",
    ) -> None:
        self.completion = completion
        self.include_usage = include_usage
        self.finished = False
        self.echo = echo  # text completions with `echo`: the prompt comes first
        # Logprobs of tokens whose text is held back travel with the next chunk that has text.
        self._logprobs: list[TokenLogprob] | None = [] if logprobs else None
        self._offsets = TextOffsets(len(echo))

    def _take_logprobs(self) -> dict | None:
        if self._logprobs is None:
            return None
        items, self._logprobs = self._logprobs, []
        return self.completion.logprobs_body(items, self._offsets)

    def _event(self, payload: dict) -> bytes:
        if self.include_usage and "usage" not in payload:
            payload["usage"] = None  # OpenAI marks every non-final chunk this way
        return sse_event(payload)

    def opening(self) -> bytes:
        if self.completion.dialect != "chat":
            return self._event(self.completion.chunk(content=self.echo)) if self.echo else b""
        return self._event(self.completion.chunk(role=True))

    def encode(self, chunk: Chunk) -> bytes:
        if self.finished:
            return b""
        if isinstance(chunk, Token):
            if self._logprobs is not None and chunk.logprob is not None:
                self._logprobs.append(chunk.logprob)
            if not chunk.text:  # text held back while a stop string may be forming
                return b""
            logprobs = self._take_logprobs()
            return self._event(self.completion.chunk(content=chunk.text, logprobs=logprobs))
        if isinstance(chunk, ToolCall):
            return b"".join(
                self._event(self.completion.chunk(tool_calls=[fragment]))
                for fragment in delta_tool_calls(chunk)
            )
        self.finished = True
        if isinstance(chunk, Finish):
            reason = wire_finish_reason(chunk.reason)
            logprobs = self._take_logprobs() if self._logprobs else None
            out = self._event(self.completion.chunk(finish_reason=reason, logprobs=logprobs))
            if self.include_usage:
                out += sse_event(self.completion.usage_chunk(chunk.usage))
            return out + SSE_DONE
        return self.error(chunk)

    def error(self, error: Error) -> bytes:
        """An error after streaming began: an SSE error event, then [DONE]."""
        self.finished = True
        return sse_event(error.body()) + SSE_DONE


class Collected:
    """A whole generation gathered for a regular (non-streaming) answer."""

    def __init__(self, completion: Completion, *, logprobs: bool = False, echo: str = "") -> None:
        self.completion = completion
        self.echo = echo
        self.parts: list[str] = []
        self.tool_calls: list[ToolCall] = []
        self.logprobs: list[TokenLogprob] | None = [] if logprobs else None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, chunk: Token | ToolCall) -> None:
        if isinstance(chunk, ToolCall):
            self.tool_calls.append(chunk)
            return
        self.parts.append(chunk.text)
        if self.logprobs is not None and chunk.logprob is not None:
            self.logprobs.append(chunk.logprob)

    def body(self, finish: Finish) -> dict:
        return self.completion.response(
            self.text,
            finish,
            tool_calls=self.tool_calls,
            logprobs_of=self.logprobs,
            echo=self.echo,
        )
