"""JSON forms of generation requests and chunks as they cross a peer link (pure)."""

from __future__ import annotations

import json
from dataclasses import asdict

from salut_tui.engine.constraint import JsonConstraint
from salut_tui.engine.sampling_contract import SamplingInvalid, check_sampling
from salut_tui.engine.types import (
    Chunk,
    Error,
    Finish,
    GenerationRequest,
    SamplingParams,
    Token,
    TokenLogprob,
    ToolCall,
    ToolSpec,
    TopLogprob,
    Usage,
)


def request_to_json(request: GenerationRequest) -> dict:
    body = asdict(request)
    body["sampling"]["stop"] = list(request.sampling.stop)
    if request.messages is not None:
        body["messages"] = list(request.messages)
    if request.tools is not None:
        body["tools"]["tools"] = list(request.tools.tools)
    return body


def tools_from_json(body: object) -> ToolSpec | None:
    """A peer's tool spec, checked for shape (the serving node's template does the rest)."""
    if body is None:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("tools"), list):
        raise ValueError("tools must be an object with a list of tools")
    choice = body.get("choice", "auto")
    if choice not in ("auto", "none", "required", "function"):
        raise ValueError(f"unknown tool choice {choice!r}")
    function = body.get("function")
    return ToolSpec(
        tuple(dict(t) for t in body["tools"]),
        choice,
        str(function) if function is not None else None,
        bool(body.get("parallel", True)),
    )


def logprobs_from_json(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 20:
        raise ValueError("logprobs must be an integer between 0 and 20")
    return value


def sampling_from_json(body: object) -> SamplingParams:
    """A peer's sampling object, checked against the one sampling contract like an API body:
    a value out of bounds, of the wrong type or an unknown field raises SamplingInvalid (a
    ValueError) instead of reaching the engine."""
    if body is None:
        return SamplingParams()
    if not isinstance(body, dict):
        raise SamplingInvalid("sampling", "sampling must be an object")
    return SamplingParams(**check_sampling(body))


def request_from_json(body: dict) -> GenerationRequest:
    messages = body.get("messages")
    return GenerationRequest(
        model=str(body["model"]),
        messages=tuple(messages) if messages is not None else None,
        prompt=body.get("prompt"),
        sampling=sampling_from_json(body.get("sampling")),
        request_id=str(body["request_id"]),
        client=str(body.get("client", "")),
        forwarded=bool(body.get("forwarded", False)),
        bearer=str(body["bearer"]) if body.get("bearer") is not None else None,
        keep_alive=_keep_alive(body.get("keep_alive")),
        constraint=JsonConstraint.from_json(body.get("constraint")),
        tools=tools_from_json(body.get("tools")),
        logprobs=logprobs_from_json(body.get("logprobs")),
    )


def _keep_alive(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError("keep_alive must be a number of seconds")
    return float(value)


def chunk_to_bytes(chunk: Chunk) -> bytes:
    if isinstance(chunk, Token):
        body: dict = {"t": chunk.text, "i": chunk.token_id}
        if chunk.logprob is not None:
            lp = chunk.logprob
            body["l"] = [lp.token, lp.logprob, [[t.token, t.logprob] for t in lp.top]]
    elif isinstance(chunk, ToolCall):
        body = {"tc": [chunk.index, chunk.id, chunk.name, chunk.arguments]}
    elif isinstance(chunk, Finish):
        body = {
            "f": chunk.reason,
            "p": chunk.usage.prompt_tokens,
            "c": chunk.usage.completion_tokens,
        }
    else:
        body = {"e": asdict(chunk)}
    return json.dumps(body, separators=(",", ":")).encode()


def chunk_from_bytes(data: bytes) -> Chunk:
    body = json.loads(data)
    if "t" in body:
        return Token(body["t"], body.get("i"), _logprob(body.get("l")))
    if "tc" in body:
        index, call_id, name, arguments = body["tc"]
        return ToolCall(int(index), str(call_id), str(name), str(arguments))
    if "f" in body:
        return Finish(body["f"], Usage(body["p"], body["c"]))
    return error_from_json(body["e"])


def error_from_json(body: dict) -> Error:
    """An Error from its JSON form (a chunk's, or a link ERROR frame's), whatever else it holds."""
    retry_after = body.get("retry_after")
    return Error(
        str(body.get("message", "peer error")),
        type=str(body.get("type", "server_error")),
        code=str(body["code"]) if body.get("code") is not None else None,
        status=int(body.get("status", 502)),
        param=str(body["param"]) if body.get("param") is not None else None,
        retry_after=int(retry_after) if retry_after is not None else None,
    )


def _logprob(body: list | None) -> TokenLogprob | None:
    if body is None:
        return None
    token, logprob, top = body
    return TokenLogprob(
        str(token), float(logprob), tuple(TopLogprob(str(t), float(v)) for t, v in top)
    )
