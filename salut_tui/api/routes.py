"""Thin request handlers: parse, ask the node, encode. The wire format lives in adapters.py.

A generation's first chunk is awaited before any header is sent, so an error that happens before
the first token (unknown model, queue full, prompt too long, no memory) is a proper HTTP error
even for `stream: true`. Closing the node's chunk iterator (finally blocks below) cancels the
generation, which is how a client that goes away stops the engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Protocol

from aiohttp import web

from salut_tui.api.adapters import Collected, Completion, StreamEncoder
from salut_tui.api.auth import bearer_token
from salut_tui.api.errors import response_for
from salut_tui.api.metrics import MODEL_KEY, ApiMetrics, metrics_response
from salut_tui.api.responses import ResponseCollector, ResponseEventEncoder, ResponseMeta
from salut_tui.api.responses_schema import ResponsesBody
from salut_tui.api.schemas import ChatCompletionBody, CompletionBody, parse_body
from salut_tui.api.serving import ServingNode
from salut_tui.engine import errors
from salut_tui.engine.types import (
    Chunk,
    Error,
    Finish,
    GenerationRequest,
    OpenAIError,
    Token,
    ToolCall,
)
from salut_tui.views import ModelInfo, to_json

log = logging.getLogger(__name__)

NODE: web.AppKey[ServingNode] = web.AppKey("salut_node")
METRICS: web.AppKey[ApiMetrics] = web.AppKey("salut_metrics")

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell reverse proxies (nginx) not to buffer the stream
}

routes = web.RouteTableDef()


class Encoder(Protocol):
    """Streams one generation's chunks as SSE bytes (adapters.StreamEncoder, responses.py)."""

    @property
    def finished(self) -> bool: ...

    def opening(self) -> bytes: ...

    def encode(self, chunk: Chunk) -> bytes: ...

    def error(self, error: Error) -> bytes: ...


class Collector(Protocol):
    """Gathers one generation for a regular JSON answer (adapters.Collected, responses.py)."""

    def add(self, chunk: Token | ToolCall) -> None: ...

    def body(self, finish: Finish) -> dict: ...


def _client_address(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return request.remote or ""


def model_entry(model: ModelInfo, created: int) -> dict:
    entry = {
        "id": model.id,
        "object": "model",
        "created": created,
        "owned_by": model.owned_by,
        "loaded": model.loaded,
        "nodes": list(model.nodes),
    }
    if model.size_bytes is not None:
        entry["size_bytes"] = model.size_bytes
    if model.memory_bytes is not None:
        entry["memory_bytes"] = model.memory_bytes
    if model.shard:  # a sharded model: which node holds which layers
        entry["shard"] = [
            {"node": p.name, "id": p.id, "rank": p.rank, "layers": list(p.layers)}
            for p in model.shard
        ]
    return entry


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    node = request.app[NODE]
    me = node.self_view()
    return web.json_response(
        {
            "status": "ok" if node.gate.open else "shutting_down",  # draining: no new work
            "version": node.version,
            "name": me.name,
            "mode": me.mode,
            "loaded_models": list(me.loaded_models),
            "requests_in_flight": me.requests_in_flight,
            "uptime": round(time.time() - node.started_at, 1),
        }
    )


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    node = request.app[NODE]
    created = int(node.started_at)
    data = [model_entry(m, created) for m in node.models()]
    return web.json_response({"object": "list", "data": data})


@routes.get("/v1/models/{model_id:.+}")
async def get_model(request: web.Request) -> web.Response:
    node = request.app[NODE]
    model_id = request.match_info["model_id"]
    for model in node.models():
        if model.id == model_id:
            return web.json_response(model_entry(model, int(node.started_at)))
    raise OpenAIError(errors.model_not_found(model_id))


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition (behind the API key when one is set: see auth.py)."""
    return metrics_response(request.app[METRICS])


@routes.get("/v1/cluster")
async def cluster(request: web.Request) -> web.Response:
    return web.json_response(to_json(request.app[NODE].cluster_view()))


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = parse_body(ChatCompletionBody, await request.read())
    node = request.app[NODE]
    generation = _with_bearer(request, body.to_request(_client_address(request)))
    completion = Completion.new("chat", generation.model, generation.request_id)
    logprobs = generation.logprobs is not None
    return await serve(
        request,
        node,
        generation,
        body.streaming,
        lambda: StreamEncoder(completion, include_usage=body.include_usage, logprobs=logprobs),
        lambda: Collected(completion, logprobs=logprobs),
    )


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    body = parse_body(CompletionBody, await request.read())
    node = request.app[NODE]
    generation = _with_bearer(request, body.to_request(_client_address(request)))
    completion = Completion.new("text", generation.model, generation.request_id)
    logprobs, echo = generation.logprobs is not None, body.prompt_text if body.echoing else ""
    return await serve(
        request,
        node,
        generation,
        body.streaming,
        lambda: StreamEncoder(
            completion, include_usage=body.include_usage, logprobs=logprobs, echo=echo
        ),
        lambda: Collected(completion, logprobs=logprobs, echo=echo),
    )


@routes.post("/v1/responses")
async def responses(request: web.Request) -> web.StreamResponse:
    """The Responses API, stateless: see responses.py (output) and responses_schema.py (input)."""
    body = parse_body(ResponsesBody, await request.read())
    node = request.app[NODE]
    generation = _with_bearer(request, body.to_request(_client_address(request)))
    meta = ResponseMeta.new(
        generation.request_id,
        generation.model,
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        tools=tuple(t.model_dump(exclude_none=True) for t in body.tools or ()),
        tool_choice=_echoed_choice(body),
        parallel_tool_calls=body.parallel_tool_calls is not False,
    )
    return await serve(
        request,
        node,
        generation,
        body.streaming,
        lambda: ResponseEventEncoder(meta),
        lambda: ResponseCollector(meta),
    )


def _echoed_choice(body: ResponsesBody) -> str | dict:
    choice = body.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.model_dump()


def _with_bearer(request: web.Request, generation: GenerationRequest) -> GenerationRequest:
    """The client's token goes with the request: a peer that serves it checks its own key."""
    return replace(generation, bearer=bearer_token(request.headers.get("Authorization")))


async def serve(
    request: web.Request,
    node: ServingNode,
    generation: GenerationRequest,
    stream: bool,
    encoder: Callable[[], Encoder],
    collector: Callable[[], Collector],
) -> web.StreamResponse:
    """Run one generation and answer it as SSE (`encoder`) or one JSON body (`collector`)."""
    request[MODEL_KEY] = generation.model
    # Closing it is what cancels the generation (the metrics wrapper passes the close on).
    chunks = request.app[METRICS].watch(generation.model, node.generate(generation))
    try:
        first = await anext(chunks, None)
        if first is None:
            raise OpenAIError(Error("The generation ended before producing anything."))
        if isinstance(first, Error):
            return response_for(first)
        if stream:
            return await _stream(request, encoder(), first, chunks)
        return await _collect(collector(), first, chunks)
    finally:
        await chunks.aclose()  # cancels the generation if it is still running


async def _collect(
    collected: Collector, first: Chunk, chunks: AsyncIterator[Chunk]
) -> web.Response:
    chunk: Chunk | None = first
    while chunk is not None:
        if isinstance(chunk, Token | ToolCall):
            collected.add(chunk)
        elif isinstance(chunk, Finish):
            return web.json_response(collected.body(chunk))
        else:
            return response_for(chunk)
        chunk = await anext(chunks, None)
    raise OpenAIError(Error("The generation ended without a finish."))


async def _stream(
    request: web.Request, encoder: Encoder, first: Chunk, chunks: AsyncIterator[Chunk]
) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    try:
        await response.write(encoder.opening() + encoder.encode(first))
        async for chunk in chunks:
            data = encoder.encode(chunk)
            if data:
                await response.write(data)  # one write per chunk: no buffering of tokens
            if encoder.finished:
                break
        if not encoder.finished:
            await response.write(encoder.error(Error("The generation ended without a finish.")))
    except ConnectionResetError:
        log.debug("client %s went away mid-stream", _client_address(request))
        return response
    except Exception as exc:
        # Headers are sent: the only way left to report a failure is an SSE error event.
        log.exception("generation failed mid-stream")
        if not encoder.finished:
            error = Error(f"The generation failed: {type(exc).__name__}")
            try:
                await response.write(encoder.error(error))
            except ConnectionResetError:
                return response
    await response.write_eof()
    return response
