"""Idle unload with a real engine and the tiny model: a model nobody used for its keep-alive is
unloaded and loaded again by the next request; a request's own keep-alive and `-1` apply; and
loading or unloading a model on a peer from this node, with the peer's memory check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salut_tui.api.schemas import CompletionBody, RequestInvalid, parse_body
from salut_tui.config import ConfigError, Settings, parse_settings
from salut_tui.engine.types import Finish, GenerationRequest, SamplingParams
from salut_tui.events import Event, ModelUnloaded
from salut_tui.node import Node
from tests.helpers import until
from tests.test_cluster_node import pair


def make(tmp: Path, name: str, model: Path, **extra: object) -> Node:
    return Node(
        Settings(
            host="127.0.0.1", port=0, data_dir=str(tmp / name), node_name=name,
            models={"tiny": str(model)}, default_model="tiny", **extra,  # type: ignore[arg-type]
        )
    )  # fmt: skip


def request(keep_alive: float | None = None) -> GenerationRequest:
    return GenerationRequest(
        model="tiny", prompt="hi", sampling=SamplingParams(temperature=0, max_tokens=3),
        keep_alive=keep_alive,
    )  # fmt: skip


async def run(node: Node, req: GenerationRequest) -> None:
    chunks = [c async for c in node.generate(req)]
    assert isinstance(chunks[-1], Finish), chunks


def test_keep_alive_is_checked_in_config_and_requests() -> None:
    assert Settings().keep_alive == "30m"
    with pytest.raises(ConfigError, match="keep_alive"):
        parse_settings({"keep_alive": "soon"}, "salut.toml")
    body = parse_body(CompletionBody, b'{"model": "m", "prompt": "x", "keep_alive": "5m"}')
    assert body.to_request("c").keep_alive == 300.0
    assert (
        parse_body(
            CompletionBody, b'{"model": "m", "prompt": "x", "keep_alive": -1}'
        ).keep_alive_seconds()
        == -1.0
    )
    with pytest.raises(RequestInvalid, match="not a duration"):
        parse_body(CompletionBody, b'{"model": "m", "prompt": "x", "keep_alive": "later"}')


async def test_an_idle_model_is_unloaded_and_the_next_request_loads_it(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    node = make(tmp_path, "A", tiny_model_path, keep_alive="1s", mode="solo")
    unloaded: list[Event] = []
    node.events.subscribe(lambda e: unloaded.append(e) if isinstance(e, ModelUnloaded) else None)
    await node.start(preload=[])
    try:
        assert node.engine is not None
        await run(node, request())  # loads it (keep-alive 1 s from the config)
        assert node.engine.is_loaded("tiny")
        (info,) = [m for m in node.local_models() if m.loaded]
        assert info.keep_alive_left is not None and 0 < info.keep_alive_left <= 1.0
        await until(lambda: len(unloaded) == 1, 10, what="idle unload")
        assert not node.engine.is_loaded("tiny")
        await run(node, request(keep_alive=-1.0))  # loaded again; this request keeps it
        assert node.engine.is_loaded("tiny")
        await asyncio.sleep(2.0)
        assert node.engine.is_loaded("tiny") and len(unloaded) == 1
        (info,) = [m for m in node.local_models() if m.loaded]
        assert info.keep_alive_left is None  # kept: no time left shown
        await node.load_model("tiny", keep_alive="0s")  # already loaded: a new keep-alive
        await until(lambda: len(unloaded) == 2, 10, what="unload at once when idle")
    finally:
        await node.stop()


@pytest.fixture
async def pair_ab(tmp_path: Path, tiny_model_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a = make(tmp_path, "A", tiny_model_path)
    b = make(tmp_path, "B", tiny_model_path)
    await a.start(preload=[])
    await b.start(preload=[])
    await pair(a, b)
    yield a, b
    await a.stop()
    await b.stop()


async def test_load_and_unload_on_a_peer(pair_ab: tuple[Node, Node]) -> None:
    a, b = pair_ab
    assert b.engine is not None and a.engine is not None
    progress: list[float] = []
    result = await a.load_on(
        "B", "tiny", keep_alive="-1", on_progress=lambda f, _s: progress.append(f)
    )
    assert result.ok and "loaded tiny on B" in result.message, result
    assert b.engine.is_loaded("tiny") and not a.engine.is_loaded("tiny")
    assert progress and progress[-1] == pytest.approx(1.0)
    (info,) = [m for m in b.local_models() if m.loaded]
    assert info.keep_alive_left is None  # the keep-alive given here applied there
    await until(lambda: "B" in next(m for m in a.models() if m.id == "tiny").nodes, 5)
    result = await a.unload_on("B", "tiny")
    assert result.ok and not b.engine.is_loaded("tiny")
    again = await a.unload_on("B", "tiny")
    assert not again.ok and "not loaded" in again.message
    # The peer's own memory check answers, in words.
    b.settings.memory_headroom_gb = 1e6
    refused = await a.load_on("B", "tiny")
    assert not refused.ok and refused.code == "insufficient_memory" and "GiB" in refused.message
    nobody = await a.load_on("nobody", "tiny")
    assert not nobody.ok and "not a paired peer" in nobody.message


async def test_a_peer_cannot_force_a_load_past_the_memory_check(pair_ab: tuple[Node, Node]) -> None:
    a, b = pair_ab
    assert b.engine is not None
    b.settings.memory_headroom_gb = 1e6  # nothing fits on B unless forced
    forced = await a.load_on("B", "tiny", force=True)
    assert not forced.ok and forced.code == "force_refused" and forced.status == 403, forced
    assert forced.message.startswith("B: ") and "only B's owner may force" in forced.message
    assert "salut load tiny --force" in forced.message
    assert not b.engine.is_loaded("tiny")
    # B's owner may (its CLI and UI load through B's own control routes: this call).
    mine = await b.load_on(None, "tiny", force=True)
    assert mine.ok and b.engine.is_loaded("tiny"), mine
