"""Sharded instances across in-process nodes on real peer links, with real runners (the tiny
model) whose ring runs through the relays: load, generate, unload; a participant's runner killed
mid-stream; a lost link; a peer that never joins; a participant without the model's files."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salut_tui.cluster.link import LinkLost
from salut_tui.cluster.tunnel import Tunnel
from salut_tui.engine.types import Chunk, Error, Finish, GenerationRequest, SamplingParams, Token
from salut_tui.shard.instance import ShardFailed
from salut_tui.shard.manager import PeerStream, ShardManager
from salut_tui.shard.placement import ShardPlan, StageAssignment
from salut_tui.shard.supervisor import RUNNER_COMMAND
from salut_tui.views import ShardView, to_json
from tests.link_mesh import Mesh, MeshNode
from tests.model_factory import build_tiny_model


class MeshPeers:
    """PeerCalls over a mesh node's links."""

    def __init__(self, node: MeshNode) -> None:
        self.node = node

    def _link(self, node_id: str):  # type: ignore[no-untyped-def]
        link = self.node.links.get(node_id)
        if link is None or link.closed:
            raise LinkLost(f"no link to {node_id}")
        return link

    async def open_stream(self, node_id: str, method: str, body: dict) -> PeerStream:
        return await self._link(node_id).open(method, body)

    async def open_tunnel(self, node_id: str, method: str, body: dict) -> Tunnel:
        return await self._link(node_id).open_tunnel(method, body)


def _managers(
    mesh: Mesh,
    tmp_path: Path,
    model: Path | None,
    commands: dict[str, tuple[str, ...]] | None = None,
    join_timeout: float = 60.0,  # generous: a loaded test machine starts runners slowly
) -> list[ShardManager]:
    managers = []
    for node in mesh.nodes:
        manager = ShardManager(
            node.node_id, tmp_path / f"data-{node.name}", MeshPeers(node),
            resolve_model=lambda model_id, m=model: m,
            command=(commands or {}).get(node.name, RUNNER_COMMAND), join_timeout=join_timeout,
        )  # fmt: skip
        node.requests = manager.serve
        node.tunnels = manager.serve_tunnel
        managers.append(manager)
    return managers


def _plan(model_id: str, nodes: list[MeshNode], splits: list[tuple[int, int]]) -> ShardPlan:
    stages = tuple(
        StageAssignment(rank, node.node_id, node.name, start, end, 1, 1 << 30, True)
        for rank, (node, (start, end)) in enumerate(zip(nodes, splits, strict=True))
    )
    return ShardPlan(model_id, splits[-1][1], stages)


def _request(model_id: str, prompt: str, max_tokens: int) -> GenerationRequest:
    sampling = SamplingParams(temperature=0, max_tokens=max_tokens)
    return GenerationRequest(model=model_id, prompt=prompt, sampling=sampling)


async def _collect(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    return [c async for c in chunks]


def _runner_pids(managers: list[ShardManager]) -> list[int]:
    return [
        i.supervisor.pid
        for m in managers
        for i in m.instances.values()
        if i.supervisor is not None and i.supervisor.pid is not None
    ]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] == "Z"


async def _until(check, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


@pytest.fixture
async def mesh3(tmp_path: Path) -> AsyncIterator[Mesh]:
    built = await Mesh.build(tmp_path, ["a", "b", "c"])
    yield built
    await built.close()


async def test_load_generate_unload_over_three_nodes(
    mesh3: Mesh, tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    managers = _managers(mesh3, tmp_path, tiny_model_path)
    plan = _plan(tiny_model_id, mesh3.nodes[:2], [(0, 1), (1, 2)])
    try:
        await managers[0].load(plan, tiny_model_path)
        views = [v for m in managers for v in m.views()]
        assert [(v.rank, v.state) for v in views] == [(0, "ready"), (1, "ready")]
        assert to_json(views[0])["participants"][1]["layers"] == [1, 2]
        assert ShardView.from_json(to_json(views[1])) == views[1]
        assert managers[2].views() == []  # c is paired but not in the plan
        pids = _runner_pids(managers)
        asks = [("hello", 6), ("def main():", 9), ("a", 1)]
        alone = [
            await _collect(managers[0].generate(tiny_model_id, _request(tiny_model_id, p, n)))
            for p, n in asks
        ]
        together = await asyncio.gather(
            *(
                _collect(managers[0].generate(tiny_model_id, _request(tiny_model_id, p, n)))
                for p, n in asks
            )
        )
        assert together == alone
        assert all(isinstance(c[-1], Finish) for c in alone)
        assert await managers[0].unload(tiny_model_id) == [views[0].instance]
        assert await _until(lambda: not managers[1].instances, 10)
        assert managers[0].instances == {}
        assert await _until(lambda: all(_gone(p) for p in pids), 10)
        assert not (tmp_path / "data-a" / "shards" / views[0].instance).exists()
    finally:
        for m in managers:
            await m.close()


@pytest.fixture(scope="module")
def three_layer_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-3", num_layers=3)


async def test_a_participant_killed_mid_stream_ends_the_stream_and_every_part(
    mesh3: Mesh, tmp_path: Path, three_layer_model: Path, tiny_model_id: str
) -> None:
    managers = _managers(mesh3, tmp_path, three_layer_model)
    plan = _plan(tiny_model_id, mesh3.nodes, [(0, 1), (1, 2), (2, 3)])
    try:
        await managers[0].load(plan, three_layer_model)
        pids = _runner_pids(managers)
        assert len(pids) == 3
        stream = managers[0].generate(tiny_model_id, _request(tiny_model_id, "hello", 100_000))
        assert isinstance(await asyncio.wait_for(stream.__anext__(), 30), Token)
        victim = managers[2].instances[next(iter(managers[2].instances))].supervisor
        assert victim is not None and victim.process is not None
        victim.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        rest = await asyncio.wait_for(_collect(stream), 10)
        assert time.monotonic() - killed < 5
        assert isinstance(rest[-1], Error) and rest[-1].code == "shard_failed"
        assert await _until(lambda: all(not m.instances for m in managers), 10)
        assert all(_gone(p) for p in pids)
        late = await _collect(managers[0].generate(tiny_model_id, _request(tiny_model_id, "x", 2)))
        assert isinstance(late[-1], Error) and late[-1].status == 503
    finally:
        for m in managers:
            await m.close()


async def test_a_lost_link_ends_the_stream_and_both_parts(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    mesh = await Mesh.build(tmp_path, ["a", "b"])
    managers = _managers(mesh, tmp_path, tiny_model_path)
    try:
        await managers[0].load(_plan(tiny_model_id, mesh.nodes, [(0, 1), (1, 2)]), tiny_model_path)
        pids = _runner_pids(managers)
        stream = managers[0].generate(tiny_model_id, _request(tiny_model_id, "hello", 100_000))
        assert isinstance(await asyncio.wait_for(stream.__anext__(), 30), Token)
        await mesh.link(mesh.nodes[1], mesh.nodes[0]).close()
        cut = time.monotonic()
        rest = await asyncio.wait_for(_collect(stream), 10)
        assert time.monotonic() - cut < 5
        assert isinstance(rest[-1], Error) and rest[-1].code == "shard_failed"
        assert await _until(lambda: all(not m.instances for m in managers), 10)
        assert all(_gone(p) for p in pids)
    finally:
        for m in managers:
            await m.close()
        await mesh.close()


async def test_a_peer_that_never_joins_fails_the_load_in_time(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    mesh = await Mesh.build(tmp_path, ["a", "b"])
    # b's runner hangs before it ever reaches the ring (as on a stalled disk or a wedged GPU).
    hang = (sys.executable, "-c", "import time, sys; time.sleep(600)")
    managers = _managers(mesh, tmp_path, tiny_model_path, {"b": hang}, join_timeout=6.0)
    try:
        started = time.monotonic()
        with pytest.raises(ShardFailed) as failure:
            await managers[0].load(
                _plan(tiny_model_id, mesh.nodes, [(0, 1), (1, 2)]), tiny_model_path
            )
        assert time.monotonic() - started < 6 + 5
        assert "did not form within 6 s" in str(failure.value)
        assert "no ring connection" in str(failure.value) and "(b)" in str(failure.value)
        assert await _until(lambda: all(not m.instances for m in managers), 10)
    finally:
        for m in managers:
            await m.close()
        await mesh.close()


async def test_a_participant_without_the_files_says_so(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    mesh = await Mesh.build(tmp_path, ["a", "b"])
    managers = _managers(mesh, tmp_path, tiny_model_path)
    managers[1].resolve_model = lambda model_id: None
    try:
        with pytest.raises(ShardFailed, match=r"b: the model '.*' is not on this node"):
            await managers[0].load(
                _plan(tiny_model_id, mesh.nodes, [(0, 1), (1, 2)]), tiny_model_path
            )
        assert await _until(lambda: all(not m.instances for m in managers), 10)
    finally:
        for m in managers:
            await m.close()
        await mesh.close()
