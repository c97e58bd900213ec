"""The engine's refusals as OpenAI-shaped Error values (status, type, code, param).

`engine_stopped` is a ModelError, since load/unload raise it; requests get its `.to_error()`.
"""

from __future__ import annotations

from salut_tui.engine.types import Error, ModelError


def model_not_loaded(model_id: str) -> Error:
    return Error(
        f"The model '{model_id}' is not loaded on this node",
        "invalid_request_error",
        "model_not_found",
        404,
        "model",
    )


def context_length_exceeded(prompt_tokens: int, context: int, param: str) -> Error:
    return Error(
        f"This model's maximum context length is {context} tokens, but the prompt has "
        f"{prompt_tokens} tokens (no room left for the completion)",
        "invalid_request_error",
        "context_length_exceeded",
        400,
        param,
    )


def queue_full(limit: int) -> Error:
    return Error(
        f"the engine queue is full ({limit} requests waiting); retry shortly",
        "server_error",
        "queue_full",
        503,
    )


def engine_stopped() -> ModelError:
    return ModelError(
        "the engine is not running", status=503, code="engine_stopped", type="server_error"
    )
