"""The Responses API's output (pure): engine chunks -> a `response` object and its typed events.

One `ResponseBuilder` follows a generation: text opens an assistant `message` item (one
`output_text` part), each `ToolCall` closes it and adds a `function_call` item, the `Finish`
closes what is open and completes the response (`incomplete` with reason `max_output_tokens` when
the length limit ended it). Every step returns the events OpenAI streams for it, in order:
`response.created`, `response.in_progress`, `response.output_item.added`,
`response.content_part.added`, `response.output_text.delta`..., `response.output_text.done`,
`response.content_part.done`, `response.output_item.done`, `response.function_call_arguments.*`,
then `response.completed` (or `.incomplete`, or `error` + `response.failed`). The streaming
encoder writes them as SSE (`event:` + `data:` lines); the collector keeps only the final object.
Nothing is stored: Salut's responses are stateless (`store` is always false).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field

from salut_tui.engine.types import Chunk, Error, Finish, Token, ToolCall, Usage


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What the response object echoes of its request, and its identity."""

    id: str
    created_at: int
    model: str
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: tuple[dict, ...] = ()
    tool_choice: str | dict = "auto"
    parallel_tool_calls: bool = True

    @classmethod
    def new(cls, request_id: str, model: str, **echoed: object) -> ResponseMeta:
        return cls("resp_" + request_id, int(time.time()), model, **echoed)  # type: ignore[arg-type]


def usage_body(usage: Usage) -> dict:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


@dataclass
class _Message:
    index: int
    id: str = field(default_factory=lambda: _id("msg_"))
    text: str = ""

    def item(self, status: str) -> dict:
        content = [] if status == "in_progress" else [self.part()]
        return {
            "id": self.id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def part(self) -> dict:
        return {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}


def _call_item(call: ToolCall, item_id: str, status: str, arguments: str) -> dict:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call.id,
        "name": call.name,
        "arguments": arguments,
    }


class ResponseBuilder:
    """The response's state across chunks; each method returns the events it caused."""

    def __init__(self, meta: ResponseMeta) -> None:
        self.meta = meta
        self.output: list[dict] = []  # finished items
        self._message: _Message | None = None
        self._sequence = 0
        self.finished = False
        self.final: dict | None = None  # the finished response object

    def response(
        self, status: str, usage: Usage | None = None, *, incomplete: str | None = None
    ) -> dict:
        m = self.meta
        return {
            "id": m.id,
            "object": "response",
            "created_at": m.created_at,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": m.instructions,
            "max_output_tokens": m.max_output_tokens,
            "model": m.model,
            "output": list(self.output),
            "parallel_tool_calls": m.parallel_tool_calls,
            "previous_response_id": None,
            "reasoning": None,
            "store": False,
            "temperature": m.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": m.tool_choice,
            "tools": list(m.tools),
            "top_p": m.top_p,
            "truncation": "disabled",
            "usage": usage_body(usage) if usage is not None else None,
            "metadata": {},
        }

    def _event(self, type: str, **fields: object) -> dict:
        event = {"type": type, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def opening(self) -> list[dict]:
        state = self.response("in_progress")
        return [
            self._event("response.created", response=state),
            self._event("response.in_progress", response=state),
        ]

    def take(self, chunk: Chunk) -> list[dict]:
        if self.finished:
            return []
        if isinstance(chunk, Token):
            return self._text(chunk.text) if chunk.text else []
        if isinstance(chunk, ToolCall):
            return self._close_message() + self._call(chunk)
        if isinstance(chunk, Finish):
            return self._finish(chunk)
        return self.fail(chunk)

    def _open(self) -> list[dict]:
        message = self._message = _Message(len(self.output))
        return [
            self._event(
                "response.output_item.added",
                output_index=message.index,
                item=message.item("in_progress"),
            ),
            self._event(
                "response.content_part.added",
                item_id=message.id,
                output_index=message.index,
                content_index=0,
                part=message.part(),
            ),
        ]

    def _text(self, text: str) -> list[dict]:
        events = self._open() if self._message is None else []
        message = self._message
        assert message is not None
        message.text += text
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=message.id,
                output_index=message.index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _close_message(self) -> list[dict]:
        message, self._message = self._message, None
        if message is None:
            return []
        where = {"item_id": message.id, "output_index": message.index, "content_index": 0}
        item = message.item("completed")
        self.output.append(item)
        return [
            self._event("response.output_text.done", **where, text=message.text, logprobs=[]),
            self._event("response.content_part.done", **where, part=message.part()),
            self._event("response.output_item.done", output_index=message.index, item=item),
        ]

    def _call(self, call: ToolCall) -> list[dict]:
        index, item_id = len(self.output), _id("fc_")
        item = _call_item(call, item_id, "completed", call.arguments)
        self.output.append(item)
        where = {"item_id": item_id, "output_index": index}
        return [
            self._event(
                "response.output_item.added",
                output_index=index,
                item=_call_item(call, item_id, "in_progress", ""),
            ),
            self._event("response.function_call_arguments.delta", **where, delta=call.arguments),
            self._event(
                "response.function_call_arguments.done",
                **where,
                name=call.name,
                arguments=call.arguments,
            ),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def _finish(self, finish: Finish) -> list[dict]:
        events = []
        if not self.output and self._message is None:
            events += self._open()  # an empty answer is still one (empty) message
        events += self._close_message()
        self.finished = True
        if finish.reason == "length":
            self.final = self.response("incomplete", finish.usage, incomplete="max_output_tokens")
            return [*events, self._event("response.incomplete", response=self.final)]
        self.final = self.response("completed", finish.usage)
        return [*events, self._event("response.completed", response=self.final)]

    def fail(self, error: Error) -> list[dict]:
        """An error after the stream began: an `error` event, then `response.failed`."""
        self.finished = True
        failed = self.response("failed")
        failed["error"] = {"code": error.code or error.type, "message": error.message}
        return [
            self._event(
                "error", code=error.code or error.type, message=error.message, param=error.param
            ),
            self._event("response.failed", response=failed),
        ]


def sse(event: dict) -> bytes:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


class ResponseEventEncoder:
    """The streaming side (routes.Encoder): typed events as SSE. No `[DONE]`: the Responses API
    ends with its terminal event."""

    def __init__(self, meta: ResponseMeta) -> None:
        self.builder = ResponseBuilder(meta)

    @property
    def finished(self) -> bool:
        return self.builder.finished

    def opening(self) -> bytes:
        return b"".join(sse(e) for e in self.builder.opening())

    def encode(self, chunk: Chunk) -> bytes:
        return b"".join(sse(e) for e in self.builder.take(chunk))

    def error(self, error: Error) -> bytes:
        return b"".join(sse(e) for e in self.builder.fail(error))


class ResponseCollector:
    """The regular side (routes.Collector): the final response object."""

    def __init__(self, meta: ResponseMeta) -> None:
        self.builder = ResponseBuilder(meta)

    def add(self, chunk: Token | ToolCall) -> None:
        self.builder.take(chunk)

    def body(self, finish: Finish) -> dict:
        self.builder.take(finish)
        assert self.builder.final is not None
        return self.builder.final
