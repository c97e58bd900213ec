"""One node's end of a sharded instance's MLX ring: its connections ride the peer link.

MLX's ring (`mx.distributed`, backend "ring") has no authentication or encryption: rank r
listens on the addresses of its own hostfile entry, accepts one connection per address from
anyone, and connects to the addresses of rank r+1's entry. So each node writes its runner a
hostfile of 127.0.0.1 ports only (`ring_hostfile`):

    entry[rank]      127.0.0.1:<the runner's own listen port>
    entry[rank + 1]  127.0.0.1:<this relay's port for the right neighbour>
    other entries    127.0.0.1:0 (never used by the ring)

The runner's connection to the relay port becomes a tunnel of the encrypted, mutually
authenticated peer link to the node of rank r+1, whose relay (`serve_inbound`) connects it to
its own runner's listen port and pipes bytes both ways. Nothing of the ring listens on the LAN,
and only the paired node that holds rank r-1 of this very instance can reach our runner.

A trusted direct cable (ring bound to that interface, no relay) would replace only
`ring_hostfile` and skip this class; it is not built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from salut_tui.cluster.link import LinkLost
from salut_tui.cluster.tunnel import TUNNEL_FRAME, Tunnel, TunnelRefused

log = logging.getLogger(__name__)

RING_TUNNEL = "shard.ring"  # link tunnel method: {"instance", "from_rank", "to_rank"}
LOOPBACK = "127.0.0.1"
UNUSED = f"{LOOPBACK}:0"
RETRY_EVERY = 0.05  # seconds between tries while the other side is not up yet

OpenTunnel = Callable[[str, str, dict], Awaitable[Tunnel]]  # (node id, method, body)


@dataclass
class RelayCounts:
    """What one rank's relay carried, both ring connections together: `out` from our runner
    into the link, `in_` from the link to our runner. A frame is one tunnel DATA frame (one
    sealed link message): the unit the relay pays for, so the figure to keep low per token."""

    frames_out: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    bytes_in: int = 0


class RingRefused(Exception):
    """An inbound ring tunnel that this instance must not accept."""


def ring_hostfile(rank: int, world_size: int, listen_port: int, relay_port: int) -> list[list[str]]:
    """The MLX ring hostfile for `rank` when its ring connections go through a relay (pure)."""
    if world_size < 2 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} of {world_size}")
    entries = [[UNUSED] for _ in range(world_size)]
    entries[(rank + 1) % world_size] = [f"{LOOPBACK}:{relay_port}"]
    entries[rank] = [f"{LOOPBACK}:{listen_port}"]
    return entries


def free_port() -> int:
    """A loopback port free now (the runner binds it a moment later; a clash fails the join)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class RingRelay:
    """The two ring connections of one rank: outbound to rank+1, inbound from rank-1."""

    def __init__(
        self,
        instance_id: str,
        *,
        rank: int,
        world_size: int,
        left_node: str,
        right_node: str,
        open_tunnel: OpenTunnel,
        on_broken: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.instance_id = instance_id
        self.rank = rank
        self.world_size = world_size
        self.left_node, self.right_node = left_node, right_node
        self.listen_port = free_port()  # the runner's own ring port
        self.relay_port = 0
        self.outbound = asyncio.Event()  # our runner reaches rank+1's runner
        self.inbound = asyncio.Event()  # rank-1's runner reaches ours
        self._open_tunnel = open_tunnel
        self._on_broken = on_broken
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._inbound_taken = False
        self._deadline = float("inf")
        self.closed = False
        self.counts = RelayCounts()

    @property
    def left_rank(self) -> int:
        return (self.rank - 1) % self.world_size

    @property
    def right_rank(self) -> int:
        return (self.rank + 1) % self.world_size

    def joined(self) -> bool:
        return self.outbound.is_set() and self.inbound.is_set()

    def missing(self, names: Mapping[int, str] | None = None) -> list[str]:
        """What the ring still waits for, in words (for the watchdog's error); `names` adds
        the node of each rank."""
        names = names or {}

        def rank(r: int) -> str:
            return f"rank {r} ({names[r]})" if r in names else f"rank {r}"

        out = []
        if not self.inbound.is_set():
            out.append(f"no ring connection from {rank(self.left_rank)}")
        if not self.outbound.is_set():
            out.append(f"no ring connection to {rank(self.right_rank)}")
        return out

    async def start(self, join_timeout: float) -> list[list[str]]:
        """Listen for our runner's outbound connection; returns its hostfile entries."""
        self._deadline = time.monotonic() + join_timeout
        self._server = await asyncio.start_server(self._outbound_connected, LOOPBACK, 0)
        self.relay_port = self._server.sockets[0].getsockname()[1]
        return ring_hostfile(self.rank, self.world_size, self.listen_port, self.relay_port)

    # ---- outbound: our runner -> relay port -> tunnel -> rank+1's node ----------------------
    async def _outbound_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._server is not None:  # the ring makes exactly one connection per address
            self._server.close()
        if self.outbound.is_set() or self.closed:
            writer.close()
            return
        body = {"instance": self.instance_id, "from_rank": self.rank, "to_rank": self.right_rank}
        tunnel: Tunnel | None = None
        while tunnel is None:
            remaining = self._deadline - time.monotonic()
            try:
                tunnel = await self._open_tunnel(self.right_node, RING_TUNNEL, body)
            except (TunnelRefused, LinkLost, ConnectionError, TimeoutError) as exc:
                # The peer may not have set up its side of the instance yet: try again.
                if remaining <= RETRY_EVERY or self.closed:
                    log.info("ring %s: rank %d cannot reach rank %d: %s", *self._ids(), exc)
                    writer.close()
                    return
                await asyncio.sleep(RETRY_EVERY)
        self.outbound.set()
        await self._pipe(reader, writer, tunnel, f"to rank {self.right_rank}")

    # ---- inbound: tunnel from rank-1's node -> our runner's listen port -----------------------
    async def serve_inbound(self, peer_node: str, body: dict, tunnel: Tunnel) -> None:
        """The link's tunnel handler for RING_TUNNEL, once the manager found this instance."""
        if peer_node != self.left_node or body.get("from_rank") != self.left_rank:
            raise RingRefused(
                f"ring {self.instance_id}: rank {self.rank} takes only rank {self.left_rank}"
            )
        if self._inbound_taken or self.closed:
            raise RingRefused(f"ring {self.instance_id}: rank {self.rank} is already connected")
        self._inbound_taken = True
        try:
            reader, writer = await self._connect_runner()
        except BaseException:
            self._inbound_taken = False
            raise
        await tunnel.accept()
        self.inbound.set()
        await self._pipe(reader, writer, tunnel, f"from rank {self.left_rank}")

    async def _connect_runner(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:  # the runner may still be starting: it listens once it calls init
            try:
                return await asyncio.open_connection(LOOPBACK, self.listen_port)
            except OSError:
                if time.monotonic() + RETRY_EVERY > self._deadline or self.closed:
                    raise RingRefused(
                        f"ring {self.instance_id}: rank {self.rank}'s runner is not listening"
                    ) from None
                await asyncio.sleep(RETRY_EVERY)

    # ---- moving bytes ------------------------------------------------------------------------
    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tunnel: Tunnel,
        what: str,
    ) -> None:
        counts = self.counts

        async def up() -> None:
            # One read takes every byte the runner wrote since the last one (up to a frame):
            # ring messages written while the previous frame was being sealed and sent share
            # the next frame.
            while data := await reader.read(TUNNEL_FRAME):
                counts.frames_out += 1
                counts.bytes_out += len(data)
                await tunnel.send(data)

        async def down() -> None:
            while data := await tunnel.receive():
                counts.frames_in += 1
                counts.bytes_in += len(data)
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        self._tasks.update(tasks)
        reason = "closed"
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    reason = str(task.exception()) or type(task.exception()).__name__
        finally:
            for task in tasks:
                task.cancel()
                self._tasks.discard(task)
            await tunnel.close()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if not self.closed:
            self._on_broken(f"ring connection {what} ended ({reason})")

    async def close(self) -> None:
        self.closed = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _ids(self) -> tuple[str, int, int]:
        return self.instance_id, self.rank, self.right_rank
