"""The sharded instances on this node, as coordinator (rank 0) or participant (rank > 0).

Depends only on narrow seams: `PeerCalls` (a stream or a tunnel to a peer, by node id), this
node's data dir, and a way to find a model's files here. The node's link handler passes the
`shard.*` methods in (`serve`, `serve_tunnel`); its router sends generations for a sharded
model to `generate` on the coordinator. Placement (which layers where) is decided before, by
`placement.plan_placement`; `load` carries a plan out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Literal, Protocol

from salut_tui.cluster.link import LinkLost, RemoteError
from salut_tui.cluster.tunnel import Tunnel
from salut_tui.engine.types import Chunk, GenerationRequest
from salut_tui.shard.instance import ShardFailed, ShardInstance
from salut_tui.shard.join import (
    JOIN,
    JOIN_TIMEOUT,
    LOAD_TIMEOUT,
    UNLOAD,
    JoinEvent,
    JoinOrder,
    Participant,
)
from salut_tui.shard.placement import ShardPlan
from salut_tui.shard.relay import RING_TUNNEL, RingRefused
from salut_tui.shard.supervisor import RUNNER_COMMAND, shard_failed
from salut_tui.views import ShardPartView, ShardView

log = logging.getLogger(__name__)


class PeerStream(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None: ...


class PeerCalls(Protocol):
    """How the shard manager reaches a paired peer (the peer link, in a node)."""

    async def open_stream(self, node_id: str, method: str, body: dict) -> PeerStream: ...
    async def open_tunnel(self, node_id: str, method: str, body: dict) -> Tunnel: ...


class ShardManager:
    def __init__(
        self,
        node_id: str,
        data_dir: Path,
        peers: PeerCalls,
        resolve_model: Callable[[str], Path | None],
        *,
        command: tuple[str, ...] = RUNNER_COMMAND,
        on_change: Callable[[], None] = lambda: None,
        on_failed: Callable[[ShardInstance], None] = lambda instance: None,
        resolve_part: Callable[[JoinOrder], Path | None] = lambda order: None,
        join_timeout: float = JOIN_TIMEOUT,
        load_timeout: float = LOAD_TIMEOUT,
    ) -> None:
        self.node_id = node_id
        self.data_dir = data_dir
        self.peers = peers
        self.resolve_model = resolve_model
        self.resolve_part = resolve_part  # a partial copy holding a participant's layers
        self.command = command
        self.join_timeout, self.load_timeout = join_timeout, load_timeout
        self._on_change = on_change
        self.on_failed = on_failed  # a coordinated (rank 0) instance failed
        self.instances: dict[str, ShardInstance] = {}

    # ---- coordinator -----------------------------------------------------------------------
    async def load(
        self,
        plan: ShardPlan,
        model_path: Path,
        *,
        mode: Literal["pipeline", "tensor"] = "pipeline",
        max_tokens_default: int = 512,
    ) -> ShardInstance:
        """Start `plan` with this node as rank 0; returns once every rank is loaded, raises
        ShardFailed (with every part torn down) otherwise."""
        if plan.stages[0].node_id != self.node_id:
            raise ValueError("the coordinator is rank 0 of its plan")
        if self.coordinating(plan.model_id) is not None:
            raise ShardFailed(f"'{plan.model_id}' is already loaded as a sharded model here")
        participants = tuple(
            Participant(s.node_id, s.name, s.layer_start, s.layer_end) for s in plan.stages
        )
        order = JoinOrder(
            f"sh-{secrets.token_hex(4)}", plan.model_id, mode, 0, plan.num_layers, participants,
            max_tokens_default, self.join_timeout, self.load_timeout,
        )  # fmt: skip
        instance = self._new_instance(order, model_path)
        await instance.start()
        for rank in range(1, order.world_size):
            instance.spawn(self._follow(instance, order.for_rank(rank)))
        try:
            await instance.wait_ready()
        except ShardFailed:
            await instance.stop()
            raise
        return instance

    async def _follow(self, instance: ShardInstance, order: JoinOrder) -> None:
        """The coordinator's view of one participant: its join stream, until either side ends."""
        who = order.me.name
        stream: PeerStream | None = None
        try:
            stream = await self.peers.open_stream(order.me.node_id, JOIN, order.to_json())
            async for payload in stream:
                event = JoinEvent.from_bytes(payload)
                if event.event == "failed":
                    self._blame(instance, order)
                    instance.event("peer_failed", f"{who}: {event.reason}")
                    return
                if event.event == "ready":
                    instance.peer_ready(order.rank, event.memory_bytes)
            self._blame(instance, order)
            instance.event("peer_failed", f"{who} ended its part")
        except (LinkLost, ConnectionError) as exc:
            self._blame(instance, order)
            instance.event("peer_failed", f"lost the link to {who} ({exc})")
        except (RemoteError, ValueError) as exc:
            self._blame(instance, order)
            instance.event("peer_failed", f"{who} refused its part: {exc}")
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()  # tells the participant to stop, if it still runs

    @staticmethod
    def _blame(instance: ShardInstance, order: JoinOrder) -> None:
        if instance.state in ("starting", "ready") and instance.blamed is None:
            instance.blamed = order.me.node_id

    def coordinating(self, model_id: str) -> ShardInstance | None:
        """This node's live rank-0 instance of `model_id`, if any."""
        for instance in self.instances.values():
            if (
                instance.order.model_id == model_id
                and instance.order.rank == 0
                and instance.state in ("starting", "ready")
            ):
                return instance
        return None

    async def generate(
        self, model_id: str, request: GenerationRequest
    ) -> AsyncGenerator[Chunk, None]:
        instance = self.coordinating(model_id)
        if instance is None:
            yield shard_failed(f"'{model_id}' is not a sharded model coordinated by this node")
            return
        try:
            await instance.wait_ready()
        except ShardFailed as exc:
            yield shard_failed(f"the sharded model failed: {exc}")
            return
        assert instance.supervisor is not None
        async for chunk in instance.supervisor.generate(request):
            yield chunk

    async def unload(self, model_id: str) -> list[str]:
        """Stop this node's coordinated instances of `model_id` (their participants follow)."""
        stopped = []
        for instance in list(self.instances.values()):
            if instance.order.model_id == model_id and instance.order.rank == 0:
                await instance.stop("unloaded")
                stopped.append(instance.instance_id)
        return stopped

    # ---- participant: what the link hands in ------------------------------------------------
    def serve(self, peer_id: str, method: str, body: dict) -> AsyncIterator[bytes]:
        if method == JOIN:
            return self._serve_join(peer_id, JoinOrder.from_json(body))
        if method == UNLOAD:
            return self._serve_unload(str(body["model"]))
        raise ValueError(f"unknown shard method {method!r}")

    async def _serve_unload(self, model_id: str) -> AsyncIterator[bytes]:
        yield json.dumps({"unloaded": await self.unload(model_id)}).encode()

    async def _serve_join(self, peer_id: str, order: JoinOrder) -> AsyncIterator[bytes]:
        if order.coordinator.node_id != peer_id or order.me.node_id != self.node_id:
            raise ValueError("a join order comes from its coordinator, for this node")
        if order.instance_id in self.instances:
            raise ValueError(f"instance {order.instance_id} already runs here")
        path = self.resolve_model(order.model_id) or self.resolve_part(order)
        if path is None:
            yield JoinEvent("failed", reason=f"the model '{order.model_id}' is not on this node "
                            "(copy its files here first)").to_bytes()  # fmt: skip
            return
        instance = self._new_instance(order, path)
        try:
            await instance.start()
            yield JoinEvent("started").to_bytes()
            try:
                await instance.wait_ready()
            except ShardFailed as exc:
                yield JoinEvent("failed", reason=str(exc)).to_bytes()
                return
            yield JoinEvent("ready", memory_bytes=instance.memory_bytes).to_bytes()
            await instance.wait_ended()
            yield JoinEvent("failed", reason=instance.reason or "stopped").to_bytes()
        finally:  # a CANCEL (the coordinator stops us) or a lost link lands here too
            await instance.stop(f"stopped by {order.coordinator.name}")

    async def serve_tunnel(self, peer_id: str, method: str, body: dict, tunnel: Tunnel) -> None:
        if method != RING_TUNNEL:
            raise ValueError(f"unknown shard tunnel {method!r}")
        instance = self.instances.get(str(body.get("instance")))
        if instance is None or instance.state not in ("starting", "ready"):
            raise RingRefused(f"no shard instance {body.get('instance')} here")
        await instance.relay.serve_inbound(peer_id, body, tunnel)

    # ---- common --------------------------------------------------------------------------
    def _new_instance(self, order: JoinOrder, model_path: Path) -> ShardInstance:
        instance = ShardInstance(
            order, model_path, self.data_dir / "shards" / order.instance_id,
            self.peers.open_tunnel, command=self.command, on_change=self._changed,
        )  # fmt: skip
        self.instances[order.instance_id] = instance
        return instance

    def _changed(self, instance: ShardInstance) -> None:
        if instance.state == "failed" and instance.order.rank == 0:
            self.on_failed(instance)
        if instance.state == "stopped":
            self.instances.pop(instance.instance_id, None)
        self._on_change()

    def views(self) -> list[ShardView]:
        return [self.view(instance) for instance in self.instances.values()]

    def view(self, instance: ShardInstance) -> ShardView:
        stats = instance.supervisor.stats if instance.supervisor is not None else None
        order = instance.order
        parts = tuple(
            ShardPartView(p.node_id, p.name, rank, (p.layer_start, p.layer_end))
            for rank, p in enumerate(order.participants)
        )
        return ShardView(
            instance=order.instance_id, model=order.model_id, mode=order.mode,
            state=instance.state, reason=instance.reason or None, rank=order.rank,
            layers=(order.me.layer_start, order.me.layer_end),
            memory_bytes=instance.memory_bytes,
            tokens_per_second=stats.tokens_per_second if stats else 0.0,
            in_flight=stats.in_flight if stats else 0,
            coordinator=order.coordinator.node_id, participants=parts,
        )  # fmt: skip

    async def close(self) -> None:
        """Node shutdown: every part on this node stops (peers learn it from their streams)."""
        await asyncio.gather(
            *(i.stop("the node is stopping") for i in list(self.instances.values())),
            return_exceptions=True,
        )
