"""Refusals as OpenAI-shaped Error values (status, type, code, param): the engine's, and the
routing answers that end a request before any engine or peer sees it. One definition each.

`engine_stopped` is a ModelError, since load/unload raise it; requests get its `.to_error()`.
"""

from __future__ import annotations

from salut_tui.engine.types import Error, ModelError


def model_not_found(model_id: str, detail: str = "") -> Error:
    """The one answer for a model nobody can serve (404 model_not_found), with why if known."""
    message = f"The model '{model_id}' does not exist or is not available"
    return Error.of(
        404, message + (f" ({detail})" if detail else ""), code="model_not_found", param="model"
    )


def model_not_loaded(model_id: str) -> Error:
    return model_not_found(model_id, "it is not loaded on this node")


def context_length_exceeded(
    prompt_tokens: int, context: int, param: str, *, at_least: bool = False
) -> Error:
    """`at_least`: counting stopped once the prompt was known to be too long."""
    has = f"at least {prompt_tokens}" if at_least else f"{prompt_tokens}"
    return Error(
        f"This model's maximum context length is {context} tokens, but the prompt has "
        f"{has} tokens (no room left for the completion)",
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


def peer_unreachable(model_id: str, peers: tuple[str, ...], retry_after: int) -> Error:
    names = ", ".join(f"'{p}'" for p in peers)
    return Error.of(
        503,
        f"The model '{model_id}' is on paired node {names}, which cannot be reached right now; "
        f"retry in a few seconds",
        code="peer_unreachable",
        param="model",
        retry_after=retry_after,
    )


def peer_key_refused(node_name: str, *, given: str | None) -> Error:
    """A forwarded request without the serving node's API key (the first node relays it)."""
    if given is None:
        message = (
            f"Node '{node_name}' serves this model and needs its API key: send it in an "
            "'Authorization: Bearer <key>' header."
        )
    else:
        message = f"Incorrect API key provided for node '{node_name}'."
    return Error(message, "invalid_request_error", "invalid_api_key", 401)


def shutting_down() -> Error:
    """A request this node will not serve (or finish) because it is shutting down. A truncated
    answer must never read as a normal finish: streams get this as an error event."""
    return Error(
        "the node is shutting down; the request was not completed, retry on another node",
        "server_error",
        "server_shutting_down",
        503,
    )


def prompt_too_long_to_tokenize(length: int, context: int, limit: int, param: str) -> Error:
    """A prompt refused on its size alone, before tokenizing it (see prompt.MAX_CHARS_PER_TOKEN)."""
    return Error(
        f"This model's maximum context length is {context} tokens, but the prompt is "
        f"{length} characters long, more than {limit} ({context} tokens can hold at most that "
        "many)",
        "invalid_request_error",
        "context_length_exceeded",
        400,
        param,
    )


def schema_invalid(reason: str) -> Error:
    """A response_format schema the grammar compiler refuses (400, like OpenAI's)."""
    return Error.of(
        400,
        f"Invalid schema for response_format: {reason}",
        param="response_format.json_schema.schema",
    )


def response_format_unsupported(model_id: str, reason: str) -> Error:
    return Error.of(
        400,
        f"The model '{model_id}' cannot constrain its output (response_format): its tokenizer "
        f"is not one the grammar engine reads ({reason}).",
        param="response_format",
    )


def response_format_sharded(model_id: str) -> Error:
    """Sharded instances do not run the grammar mask yet: say so rather than ignore it."""
    return Error.of(
        400,
        f"The model '{model_id}' is served sharded across nodes, where response_format "
        "(json_object, json_schema) is not supported yet; load it on one node to use it.",
        code="unsupported_parameter",
        param="response_format",
    )
