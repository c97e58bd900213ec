"""One request's output on the MLX thread: sampled tokens in, chunks out.

Composes the parts a request asked for: the text (`TextStream`: detokenizing, stop strings,
usage), tool calls (`tools.ToolCallStream`, when the request offers tools) and log-probabilities
(`LogprobReader`, when asked). Every generated token still yields exactly one `Token` chunk (its
text may be empty: held back, or part of a tool call), so chunk counts match the usage; finished
tool calls come as `ToolCall` chunks right after the token that completed them.
"""

from __future__ import annotations

import math
from typing import Any, cast

import mlx.core as mx

from salut_tui.engine.text_stream import TextStream
from salut_tui.engine.tools import ToolCallStream, active_tools, prefill
from salut_tui.engine.types import (
    Chunk,
    FinishReason,
    GenerationRequest,
    Token,
    TokenLogprob,
    TopLogprob,
    Usage,
)

# What OpenAI reports for a token the model gave no chance at all (JSON has no -Infinity).
LOGPROB_FLOOR = -9999.0


def _finite(value: float) -> float:
    return value if math.isfinite(value) and value > LOGPROB_FLOOR else LOGPROB_FLOOR


class LogprobReader:
    """A token's log-probability and its `top` most likely alternatives, with their text."""

    def __init__(self, tokenizer: Any, top: int) -> None:
        self._tokenizer = tokenizer
        self._top = top

    def _text(self, token_id: int) -> str:
        return str(self._tokenizer.decode([token_id]))

    def read(self, token: int, logprobs: mx.array) -> TokenLogprob:
        top: tuple[TopLogprob, ...] = ()
        if self._top > 0:
            ids = mx.argpartition(-logprobs, kth=self._top - 1)[: self._top]
            id_list = cast(list[int], ids.tolist())
            values = cast(list[float], logprobs[ids].tolist())
            ranked = sorted(zip(id_list, values, strict=True), key=lambda p: -p[1])
            top = tuple(TopLogprob(self._text(i), _finite(v)) for i, v in ranked)
        return TokenLogprob(self._text(token), _finite(cast(float, logprobs[token].item())), top)


class OutputStream:
    def __init__(
        self,
        text: TextStream,
        tools: ToolCallStream | None = None,
        logprobs: LogprobReader | None = None,
    ) -> None:
        self.text = text
        self.tools = tools
        self.logprobs = logprobs

    @property
    def usage(self) -> Usage:
        return self.text.usage

    def step(
        self, token: int, logprobs: mx.array | None, reason: str | None
    ) -> tuple[list[Chunk], FinishReason | None]:
        """The chunks for one sampled token, and the finish reason when the request ends."""
        piece, ended = self.text.step(token, reason)
        reader = self.logprobs
        if (
            piece is not None
            and piece.token_id is not None
            and reader is not None
            and logprobs is not None
        ):
            piece = Token(piece.text, piece.token_id, reader.read(token, logprobs))
        if self.tools is None:
            return ([piece] if piece is not None else []), ended
        chunks: list[Chunk] = []
        step = self.tools.feed(piece.text if piece is not None else "")
        text, calls = step.text, step.calls
        if step.end:
            ended = "tool_calls"
        elif ended is not None:
            last, ended = self.tools.finish(ended)
            text, calls = text + last.text, calls + last.calls
        if piece is not None:
            chunks.append(Token(text, piece.token_id, piece.logprob))
        elif text:
            chunks.append(Token(text))
        chunks.extend(calls)
        return chunks, ended


def request_output(tokenizer: Any, request: GenerationRequest, text: TextStream) -> OutputStream:
    """The request's output: tool calls parsed when it offers tools, logprobs when asked."""
    tools = None
    if request.messages is not None:
        spec = active_tools(tokenizer, request.model, request.tools)  # checked when encoding
        if spec is not None and spec.choice != "none":
            tools = ToolCallStream(tokenizer, spec, prefill(tokenizer, spec))
    reader = LogprobReader(tokenizer, request.logprobs) if request.logprobs is not None else None
    return OutputStream(text, tools, reader)
