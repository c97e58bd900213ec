"""Request and chunk types that cross the boundary between the MLX thread and the asyncio loop.

They are plain frozen dataclasses so that they can be built in tests without a model, encoded by
the pure API adapters, and (for the cluster) serialised over a peer link.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Literal

from salut_tui.engine.constraint import JsonConstraint
from salut_tui.engine.sampling_contract import (
    MAX_TOKENS,
    REPETITION_PENALTY,
    SEED,
    TEMPERATURE,
    TOP_P,
)

# "tool_calls": the answer is one or more tool calls (the model stopped after them).
FinishReason = Literal["stop", "length", "cancelled", "error", "tool_calls"]
ToolChoiceMode = Literal["auto", "none", "required", "function"]

_ids = itertools.count(1)


def new_request_id() -> str:
    """A short id unique within this process (the API adds its own prefix)."""
    return f"{int(time.time() * 1000):x}{next(_ids):04x}"


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Per-request sampling. Bounds, defaults and meanings: `engine/sampling_contract.py`."""

    temperature: float = TEMPERATURE.default
    top_p: float = TOP_P.default
    repetition_penalty: float = REPETITION_PENALTY.default
    max_tokens: int | None = MAX_TOKENS.default
    stop: tuple[str, ...] = ()
    seed: int | None = SEED.default


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """The tools a chat request offers (OpenAI `tools`, `tool_choice`, `parallel_tool_calls`).

    `tools` are OpenAI tool objects as sent (`{"type": "function", "function": {...}}`), handed to
    the chat template as they are. `choice` "function" names one tool in `function`.
    """

    tools: tuple[dict, ...]
    choice: ToolChoiceMode = "auto"
    function: str | None = None
    parallel: bool = True


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation. Exactly one of `messages` (chat) or `prompt` (text completion) is set."""

    model: str
    messages: tuple[dict, ...] | None = None
    prompt: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = field(default_factory=new_request_id)
    client: str = ""  # who asked (address), for the Streams screen
    # Set by the peer link on a request a peer sent here: serve it here, never bounce it on.
    forwarded: bool = False
    # The client's bearer token as it reached the first node. It travels (inside the encrypted
    # peer link) with a forwarded request so that the node serving it checks its own API key.
    bearer: str | None = field(default=None, repr=False)
    # The request's own keep-alive for its model, in seconds (negative: keep it loaded); None
    # when the request gives none (the model keeps the one it was loaded with).
    keep_alive: float | None = None
    # `response_format` json_object / json_schema: the output is constrained to that JSON.
    constraint: JsonConstraint | None = None
    tools: ToolSpec | None = None  # chat only
    # Log-probabilities: None off; n >= 0: each token's logprob with its n most likely
    # alternatives (OpenAI `logprobs: true` + `top_logprobs: n`, or completions' `logprobs: n`).
    logprobs: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One sampled token's log-probability and the most likely alternatives at its position."""

    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Token:
    """A piece of generated text (may be empty while a stop string is being held back)."""

    text: str
    token_id: int | None = None
    logprob: TokenLogprob | None = None  # set when the request asked for logprobs


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One complete tool call the model made, parsed by the model's mlx-lm tool parser.

    `arguments` is a JSON string (as OpenAI sends it); `index` counts calls within the answer.
    """

    index: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    usage: Usage


_TYPE_BY_STATUS = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def error_type_for(status: int) -> str:
    """The OpenAI error `type` that goes with an HTTP status."""
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    return "server_error" if status >= 500 else "invalid_request_error"


@dataclass(frozen=True, slots=True)
class Error:
    """The one OpenAI-shaped error: a chunk ending a generation, the body of an HTTP error
    (`body()`), and, wrapped in `OpenAIError`, what load/resolve/handlers raise."""

    message: str
    type: str = "server_error"
    code: str | None = None
    status: int = 500
    param: str | None = None
    retry_after: int | None = None  # seconds, sent as a Retry-After header

    @classmethod
    def of(
        cls,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> Error:
        """An error whose `type` follows from its status."""
        return cls(message, error_type_for(status), code, status, param, retry_after)

    def body(self) -> dict:
        """`{"error": {message, type, param, code}}`, as OpenAI clients parse it."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


Chunk = Token | ToolCall | Finish | Error


class OpenAIError(Exception):
    """Raised to end a request with `error` (turned into its HTTP answer at the API edge)."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.message)
        self.error = error

    @property
    def message(self) -> str:
        return self.error.message

    @property
    def status(self) -> int:
        return self.error.status

    @property
    def code(self) -> str | None:
        return self.error.code

    @property
    def param(self) -> str | None:
        return self.error.param

    def to_error(self) -> Error:
        return self.error


class ModelError(OpenAIError):
    """A model cannot be used: unknown id (404 model_not_found), does not fit in memory
    (507 insufficient_memory), not loaded, bad files... Raised by load/unload and resolution."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str | None = None,
        type: str = "invalid_request_error",
        param: str | None = None,
    ) -> None:
        super().__init__(Error(message, type, code, status, param))

    @classmethod
    def of(cls, error: Error) -> ModelError:
        raised = cls.__new__(cls)
        OpenAIError.__init__(raised, error)
        return raised
