"""The ring relay's cost: the same MLX ring programs direct on loopback and through relays.

    python bench/bench_relay.py [--rounds 300] [--sizes 2,3]

First the relay alone: a blocking client (as MLX's ring threads are) sends messages of 4 B,
4 KB and 64 KB to an echo server, through two relays and a peer link tunnel (both nodes' relays
in this process) and directly; mean round trip.

Then each ring size runs `tests/ring_program.py` (plain `mx.distributed`, ring backend) twice,
side by side: ranks connected directly (127.0.0.1 ports), then through Salut's relays, every
ring connection a tunnel of a real encrypted peer link between in-process nodes
(`tests/link_mesh`). Reported per size: mean time of a 4 KB `all_sum`, and of a 4 KB message's
trip once around the ring (send/recv hop by hop), as measured inside rank 0. MLX's ring threads
poll their sockets without sleeping while they wait, so on a machine with few cores the ranks
take CPU from the relays: read these figures next to the echo ones. Each ring is also run with
its polling threads niced (`--yield-threads`, `shard/ringthreads`), as Salut's shard runner does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from salut_tui.shard.relay import RingRelay, free_port
from tests.link_mesh import Mesh
from tests.test_shard_relay import _relays, _run_ring


def _round_trips(port: int, sizes: tuple[int, ...], rounds: int) -> dict[int, float]:
    """Mean round trip (ms) of each message size to the echo behind `port` (blocking socket)."""
    out = {}
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for size in sizes:
            message = b"x" * size
            start = time.perf_counter()
            for n in range(rounds + 20):  # 20 warm-up rounds
                if n == 20:
                    start = time.perf_counter()
                s.sendall(message)
                got = 0
                while got < size:
                    got += len(s.recv(1 << 20))
            out[size] = (time.perf_counter() - start) / rounds * 1e3
    return out


async def echo(tmp: Path, rounds: int) -> dict:
    mesh = await Mesh.build(tmp, ["a", "b"])
    a, b = mesh.nodes

    async def open_tunnel(node_id: str, method: str, body: dict):  # type: ignore[no-untyped-def]
        return await a.links[node_id].open_tunnel(method, body)

    ends = {
        "a": RingRelay("echo", rank=0, world_size=2, left_node=b.node_id, right_node=b.node_id,
                       open_tunnel=open_tunnel),
        "b": RingRelay("echo", rank=1, world_size=2, left_node=a.node_id, right_node=a.node_id,
                       open_tunnel=open_tunnel),
    }  # fmt: skip
    b.tunnels = lambda peer, method, body, tunnel: ends["b"].serve_inbound(peer, body, tunnel)
    for relay in ends.values():
        await relay.start(30)

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()

    server = await asyncio.start_server(reply, "127.0.0.1", ends["b"].listen_port)
    sizes = (4, 4096, 65536)
    try:
        relayed = await asyncio.to_thread(_round_trips, ends["a"].relay_port, sizes, rounds)
        direct = await asyncio.to_thread(_round_trips, ends["b"].listen_port, sizes, rounds)
    finally:
        server.close()
        for relay in ends.values():
            await relay.close()
        await mesh.close()
    return {"round_trip_ms": {str(k): {"direct": direct[k], "relay": relayed[k]} for k in sizes}}


async def measure(size: int, rounds: int, tmp: Path) -> dict:
    ports = [free_port() for _ in range(size)]
    direct_hosts = [[[f"127.0.0.1:{p}"] for p in ports] for _ in range(size)]
    out: dict = {"ranks": size, "all_sum_ms": {}, "ring_trip_ms": {}}
    for name, extra in (("direct", ()), ("direct niced", ("--yield-threads",))):
        got = (await _run_ring(tmp, direct_hosts, "--rounds", str(rounds), *extra))[0]
        for key in ("all_sum_ms", "ring_trip_ms"):
            out[key][name] = got[key]
    for name, extra in (("relay", ()), ("relay niced", ("--yield-threads",))):
        mesh = await Mesh.build(tmp, [f"n{i}" for i in range(size)])
        try:
            relays = _relays(mesh, f"bench-{size}")
            hostfiles = [await relays[n.node_id].start(join_timeout=60) for n in mesh.nodes]
            got = (await _run_ring(tmp, hostfiles, "--rounds", str(rounds), *extra))[0]
            for relay in relays.values():
                await relay.close()
        finally:
            await mesh.close()
        for key in ("all_sum_ms", "ring_trip_ms"):
            out[key][name] = got[key]
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--sizes", default="2,3")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trips = await echo(Path(tmp), args.rounds)
    for size, t in trips["round_trip_ms"].items():
        print(f"echo {size:>6} B round trip  direct {t['direct']:7.3f}  relay {t['relay']:7.3f} ms")
    print(json.dumps(trips), flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            result = await measure(size, args.rounds, Path(tmp))
        for key in ("all_sum_ms", "ring_trip_ms"):
            t = result[key]
            print(
                f"{size} ranks  {key:<13} direct {t['direct']:7.3f}  relay {t['relay']:7.3f}"
                f"  | ring threads niced: direct {t['direct niced']:7.3f}"
                f"  relay {t['relay niced']:7.3f} ms"
            )
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
