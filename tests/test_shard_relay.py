"""A real MLX ring across 2 and 3 processes whose connections all go through relays and peer
link tunnels (each node an in-process relay on a real link), and the relay's refusals."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salut_tui.cluster.tunnel import Tunnel, TunnelRefused
from salut_tui.shard.relay import RING_TUNNEL, RingRelay, ring_hostfile
from tests.link_mesh import Mesh

RING_PROGRAM = Path(__file__).with_name("ring_program.py")


def test_hostfile_points_at_the_runner_and_the_relay_only() -> None:
    assert ring_hostfile(0, 2, 5000, 6000) == [["127.0.0.1:5000"], ["127.0.0.1:6000"]]
    assert ring_hostfile(1, 2, 5001, 6001) == [["127.0.0.1:6001"], ["127.0.0.1:5001"]]
    assert ring_hostfile(2, 3, 5002, 6002) == [
        ["127.0.0.1:6002"],
        ["127.0.0.1:0"],
        ["127.0.0.1:5002"],
    ]
    with pytest.raises(ValueError):
        ring_hostfile(2, 2, 1, 2)


def _relays(mesh: Mesh, instance: str, on_broken=None) -> dict[str, RingRelay]:  # type: ignore[no-untyped-def]
    nodes = mesh.nodes
    relays: dict[str, RingRelay] = {}
    for rank, node in enumerate(nodes):
        links = node.links

        async def open_tunnel(node_id: str, method: str, body: dict, links=links) -> Tunnel:  # type: ignore[no-untyped-def]
            return await links[node_id].open_tunnel(method, body, timeout=2.0)

        relays[node.node_id] = RingRelay(
            instance, rank=rank, world_size=len(nodes),
            left_node=nodes[rank - 1].node_id, right_node=nodes[(rank + 1) % len(nodes)].node_id,
            open_tunnel=open_tunnel, on_broken=on_broken or (lambda reason: None),
        )  # fmt: skip
        node.tunnels = _serving(relays[node.node_id])
    return relays


def _serving(relay: RingRelay):  # type: ignore[no-untyped-def]
    async def serve(peer: str, method: str, body: dict, tunnel: Tunnel) -> None:
        assert method == RING_TUNNEL and body["instance"] == relay.instance_id
        await relay.serve_inbound(peer, body, tunnel)

    return serve


async def _run_ring(tmp_path: Path, hostfiles: list[list[list[str]]], *extra: str) -> list[dict]:
    procs = []
    for rank, entries in enumerate(hostfiles):
        path = tmp_path / f"hosts-{rank}.json"
        path.write_text(json.dumps(entries))
        env = {**os.environ, "MLX_HOSTFILE": str(path), "MLX_RANK": str(rank)}
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(RING_PROGRAM),
                *extra,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        )
    try:
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    return [json.loads(out) for out, _ in outputs]


@pytest.fixture
async def mesh3(tmp_path: Path) -> AsyncIterator[Mesh]:
    built = await Mesh.build(tmp_path, ["a", "b", "c"])
    yield built
    await built.close()


@pytest.mark.parametrize("size", [2, 3])
async def test_an_mlx_ring_runs_through_relays(tmp_path: Path, size: int) -> None:
    mesh = await Mesh.build(tmp_path, ["a", "b", "c"][:size])
    try:
        relays = _relays(mesh, "inst-1")
        hostfiles = [await relays[n.node_id].start(join_timeout=60) for n in mesh.nodes]
        results = await _run_ring(tmp_path, hostfiles)
        factor = sum(range(1, size + 1))
        for rank, out in enumerate(results):
            assert out["rank"] == rank and out["size"] == size
            assert out["all_sum"] == [float(i * factor) for i in range(8)]
            assert out["big_all_sum"] == [float(factor), float(factor)]
            left = (rank - 1) % size
            assert out["received"] == [100 * left + i for i in range(5)]
        assert all(r.joined() for r in relays.values())
        # Every ring byte crossed a link tunnel: each node relayed both directions.
        for relay in relays.values():
            await relay.close()
    finally:
        await mesh.close()


async def test_only_the_left_neighbour_of_this_instance_may_connect(mesh3: Mesh) -> None:
    relays = _relays(mesh3, "inst-2")
    a, b, c = mesh3.nodes
    await relays[b.node_id].start(join_timeout=1)
    # c holds rank 2: b (rank 1) takes its inbound connection only from a (rank 0).
    with pytest.raises(TunnelRefused, match="takes only rank 0"):
        await mesh3.link(c, b).open_tunnel(
            RING_TUNNEL, {"instance": "inst-2", "from_rank": 2, "to_rank": 1}
        )
    with pytest.raises(TunnelRefused, match="takes only rank 0"):  # a lying about its rank
        await mesh3.link(c, b).open_tunnel(
            RING_TUNNEL, {"instance": "inst-2", "from_rank": 0, "to_rank": 1}
        )
    # a is right, but b's runner never listens: refused once the join deadline passes.
    with pytest.raises(TunnelRefused, match="not listening"):
        await mesh3.link(a, b).open_tunnel(
            RING_TUNNEL, {"instance": "inst-2", "from_rank": 0, "to_rank": 1}, timeout=5
        )
    assert relays[b.node_id].missing() == [
        "no ring connection from rank 0",
        "no ring connection to rank 2",
    ]
    await relays[b.node_id].close()


async def test_a_dead_runner_breaks_the_relay_and_reports_it(tmp_path: Path) -> None:
    mesh = await Mesh.build(tmp_path, ["a", "b"])
    broken: list[str] = []
    try:
        relays = _relays(mesh, "inst-3", on_broken=broken.append)
        hostfiles = [await relays[n.node_id].start(join_timeout=60) for n in mesh.nodes]
        await _run_ring(tmp_path, hostfiles)  # the programs exit: their sockets close
        for _ in range(200):
            if len(broken) >= 4:
                break
            await asyncio.sleep(0.02)
        assert len(broken) == 4  # both relays, both directions
        assert all(b.startswith("ring connection") for b in broken)
        for relay in relays.values():
            await relay.close()
    finally:
        await mesh.close()
