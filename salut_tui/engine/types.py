"""Request and chunk types that cross the boundary between the MLX thread and the asyncio loop.

They are plain frozen dataclasses so that they can be built in tests without a model, encoded by
the pure API adapters, and (for the cluster) serialised over a peer link.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Literal

from salut_tui.engine.sampling_contract import (
    MAX_TOKENS,
    REPETITION_PENALTY,
    SEED,
    TEMPERATURE,
    TOP_P,
)

FinishReason = Literal["stop", "length", "cancelled", "error"]

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
class GenerationRequest:
    """One generation. Exactly one of `messages` (chat) or `prompt` (text completion) is set."""

    model: str
    messages: tuple[dict, ...] | None = None
    prompt: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = field(default_factory=new_request_id)
    client: str = ""  # who asked (address), for the Streams screen


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Token:
    """A piece of generated text (may be empty while a stop string is being held back)."""

    text: str
    token_id: int | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    usage: Usage


@dataclass(frozen=True, slots=True)
class Error:
    """An error as a value. `status` and `code` follow the OpenAI error shape."""

    message: str
    type: str = "server_error"
    code: str | None = None
    status: int = 500
    param: str | None = None


Chunk = Token | Finish | Error


class ModelError(Exception):
    """A model cannot be used: unknown id (404 model_not_found), does not fit in memory
    (507 insufficient_memory), not loaded, bad files... Raised by load/unload and resolution;
    turned into an `Error` chunk or an OpenAI error body at the edges."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str | None = None,
        type: str = "invalid_request_error",
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.type = type
        self.param = param

    def to_error(self) -> Error:
        return Error(
            self.message, type=self.type, code=self.code, status=self.status, param=self.param
        )
