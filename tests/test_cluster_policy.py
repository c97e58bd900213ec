"""What a node's cluster must refuse or explain, with two real nodes in one process:
- B's API key protects B's models on every path: through an A without a key, a client without
  B's key gets 401 (relayed by A), and with B's key it is served (issue 8, point 4);
- a paired peer known to hold the model but stopped or unreachable gives 503 peer_unreachable
  with Retry-After, not 404 (issue 8, point 6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from salut_tui.config import Settings
from salut_tui.engine.types import Error, Finish, GenerationRequest
from salut_tui.node import Node
from salut_tui.routing import PEER_RETRY_AFTER_S
from tests.helpers import until
from tests.test_cluster_node import greedy, make, pair

B_KEY = "sk-b-only-5678"
BODY = {"model": "tiny-b", "prompt": "hello", "max_tokens": 4, "temperature": 0}


@pytest.fixture
async def a_and_keyed_b(tmp_path: Path, tiny_model_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a = make(tmp_path, "A")
    b = Node(
        Settings(
            host="127.0.0.1",
            port=0,
            data_dir=str(tmp_path / "B"),
            node_name="B",
            models={"tiny-b": str(tiny_model_path)},
            api_key=B_KEY,
        )
    )
    await a.start()
    await b.start(preload=["tiny-b"])
    await until(lambda: b.engine is not None and b.engine.is_loaded("tiny-b"))
    await pair(a, b)
    yield a, b
    await a.stop()
    await b.stop()


async def post(node: Node, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{node.port}/v1/completions", json=BODY, headers=headers or {}
        ) as response,
    ):
        return response.status, dict(response.headers), await response.json()


async def test_bs_key_protects_bs_model_through_a(a_and_keyed_b: tuple[Node, Node]) -> None:
    a, b = a_and_keyed_b
    assert (await post(b))[0] == 401  # B itself, directly
    status, headers, body = await post(a)  # A has no key: B's policy still applies
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert "'B'" in body["error"]["message"] and "WWW-Authenticate" in headers
    status, _, body = await post(a, {"Authorization": "Bearer wrong"})
    assert status == 401 and "Incorrect API key" in body["error"]["message"]
    status, _, body = await post(a, {"Authorization": f"Bearer {B_KEY}"})
    assert status == 200 and body["choices"][0]["finish_reason"] in {"stop", "length"}


async def test_a_forwarded_request_without_the_key_never_reaches_bs_engine(
    a_and_keyed_b: tuple[Node, Node],
) -> None:
    a, b = a_and_keyed_b
    (chunk,) = [c async for c in a.generate(greedy(3))]  # the UI chat on A: no bearer
    assert isinstance(chunk, Error) and chunk.status == 401
    assert b.engine is not None and b.engine.tokens_decoded == 0
    keyed = GenerationRequest(model="tiny-b", prompt="hi", bearer=B_KEY)
    assert isinstance([c async for c in a.generate(keyed)][-1], Finish)


async def test_a_stopped_peers_model_is_unreachable_not_missing(
    a_and_keyed_b: tuple[Node, Node],
) -> None:
    a, b = a_and_keyed_b
    assert a.cluster is not None and b.cluster is not None
    b_id = b.cluster.node_id
    await b.stop()
    await until(lambda: a.cluster.table.get(b_id).health == "unreachable")  # type: ignore[union-attr]
    (chunk,) = [c async for c in a.generate(greedy(3))]
    assert isinstance(chunk, Error) and (chunk.status, chunk.code) == (503, "peer_unreachable")
    status, headers, body = await post(a)
    assert status == 503 and body["error"]["code"] == "peer_unreachable"
    assert headers["Retry-After"] == str(PEER_RETRY_AFTER_S) and "'B'" in body["error"]["message"]
    # A model nobody ever had is still a 404.
    unknown = [c async for c in a.generate(GenerationRequest(model="nowhere", prompt="x"))]
    assert isinstance(unknown[0], Error) and unknown[0].status == 404
