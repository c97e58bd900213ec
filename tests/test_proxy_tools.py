"""Tool calls and log-probabilities survive the peer wire: a request proxied over a real
encrypted link to an engine on another "node" gives the same chunks as one served locally."""

from __future__ import annotations

from collections.abc import AsyncIterator

from salut_tui.cluster.link import PeerLink
from salut_tui.cluster.proxy import generate_remote
from salut_tui.cluster.wire import (
    chunk_from_bytes,
    chunk_to_bytes,
    request_from_json,
    request_to_json,
)
from salut_tui.engine.types import (
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
from tests.engine_helpers import make_engine
from tests.test_api_tools import ASK, WEATHER
from tests.test_cluster_proxy import Peers, candidates, peers  # noqa: F401 (fixture)

REQUEST = GenerationRequest(
    "m",
    messages=tuple(ASK),
    tools=ToolSpec((WEATHER,), "function", "get_weather", parallel=False),
    logprobs=2,
    sampling=SamplingParams(temperature=0.0, max_tokens=40),
)


def test_request_and_chunks_round_trip_the_wire() -> None:
    assert request_from_json(request_to_json(REQUEST)) == REQUEST
    for chunk in (
        Token("hi", 7, TokenLogprob("hi", -0.5, (TopLogprob("hi", -0.5), TopLogprob("ho", -1.5)))),
        ToolCall(1, "call_x", "get_weather", '{"city": "Paris"}'),
        Finish("tool_calls", Usage(30, 12)),
    ):
        assert chunk_from_bytes(chunk_to_bytes(chunk)) == chunk


async def test_proxied_tool_call_with_logprobs(
    peers: Peers,  # noqa: F811
    tmp_path,
    tiny_tool_model_path,
) -> None:
    engine, _ = make_engine(tmp_path, "m", tiny_tool_model_path)
    await engine.start()
    await engine.load("m")
    tokenizer = engine.tokenizer_for("m")
    arguments = tokenizer.encode('{"city": "Paris"}}\n</tool_call>', add_special_tokens=False)

    async def serve(request: GenerationRequest, link: PeerLink) -> AsyncIterator[object]:
        assert request.tools == REQUEST.tools and request.logprobs == 2  # arrived whole
        async for chunk in engine.generate(request):
            yield chunk

    try:
        await engine.script_next("m", arguments)
        local = [c async for c in engine.generate(REQUEST)]
        b = await peers.add("B", serve)
        await engine.script_next("m", arguments)
        remote = [c async for c in generate_remote(REQUEST, candidates(b))]
    finally:
        await engine.stop()

    def comparable(chunks: list) -> list:  # call ids are fresh per answer
        return [(c.name, c.arguments) if isinstance(c, ToolCall) else c for c in chunks]

    assert comparable(remote) == comparable(local)
    calls = [c for c in remote if isinstance(c, ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city": "Paris"}')]
    tokens = [c for c in remote if isinstance(c, Token)]
    assert tokens and all(t.logprob is not None and len(t.logprob.top) == 2 for t in tokens)
    assert isinstance(remote[-1], Finish) and remote[-1].reason == "tool_calls"
