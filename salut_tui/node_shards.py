"""The node's sharded models: the wiring between `Node` and `salut_tui.shard`.

Built by `Node` when it has both a cluster and an engine. It gives the shard service what it
needs to know (`ShardHost`: this node's free memory and models, its peers, where a model's files
are), loads the `[[shard]]` tables of the config once their peers are linked, and offers the
load/unload/plan entry points the control routes (`salut load/unload`) and the UI call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from salut_tui.cluster.cluster import Cluster
from salut_tui.config import Settings, ShardSetting
from salut_tui.engine.registry import ModelRegistry
from salut_tui.engine.types import ModelError
from salut_tui.events import EventBus, ShardsChanged
from salut_tui.shard.manager import ShardManager
from salut_tui.shard.placement import ShardPlan
from salut_tui.shard.planning import Candidate
from salut_tui.shard.service import Mode, ShardService
from salut_tui.views import ModelInfo

log = logging.getLogger(__name__)

SHARD_PRELOAD_WAIT = 60.0  # seconds a [[shard]] from the config waits for its peers


class NodeShards:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        cluster: Cluster,
        events: EventBus,
        *,
        free_memory: Callable[[], int],
        local_models: Callable[[], list[ModelInfo]],
        load_model: Callable[..., Awaitable[Any]],
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.cluster = cluster
        self._free_memory = free_memory
        self._local_models = local_models
        self._load_model = load_model
        manager = ShardManager(
            cluster.node_id, settings.data_path(), cluster, registry.locate,
            on_change=lambda: events.publish(ShardsChanged("shards")),
        )  # fmt: skip
        self.service = ShardService(manager, self)
        cluster.shards = manager  # the links hand shard.* methods and tunnels to it

    # ---- what the control routes and the UI call --------------------------------------------
    def plan(self, model_id: str, nodes: list[str] | None = None) -> ShardPlan:
        return self.service.plan(model_id, nodes)[0]

    async def load(
        self, model_id: str, nodes: list[str] | None = None, mode: Mode = "pipeline"
    ) -> ShardPlan:
        """Load `model_id` split over this node (coordinator) and peers; a plan of one node
        (it fits here, and no nodes were named) loads it whole instead."""
        plan, path = self.service.plan(model_id, nodes)
        if plan.world_size == 1:
            await self._load_model(model_id, source=path)
        else:
            await self.service.load(plan, path, mode)
        return plan

    async def unload(self, model_id: str) -> list[str]:
        return await self.service.unload(model_id)

    async def preload(self, shard: ShardSetting) -> None:
        """A `[[shard]]` from the config: once the peers it names are linked, load it."""
        deadline = time.monotonic() + SHARD_PRELOAD_WAIT
        me = self.settings.display_name()
        while time.monotonic() < deadline:
            views = self.cluster.peer_views()
            healthy = {n for v in views if v.health == "ok" for n in (v.name, v.id)}
            if (shard.nodes and set(shard.nodes) <= healthy | {me}) or (
                not shard.nodes and healthy
            ):
                break
            await asyncio.sleep(0.5)
        try:
            await self.load(shard.model, shard.nodes or None, shard.mode)
        except ModelError as exc:
            log.error("could not load %s sharded: %s", shard.model, exc.message)

    async def close(self) -> None:
        await self.service.manager.close()

    # ---- ShardHost ----------------------------------------------------------------------------
    def shard_candidates(self, model_id: str) -> tuple[Candidate, list[Candidate]]:
        mine = frozenset(m.id for m in self._local_models())
        me = Candidate(
            self.cluster.node_id, self.settings.display_name(), self._free_memory(), mine
        )
        peers = [
            Candidate(
                v.id,
                v.name,
                v.vram_free or 0,
                frozenset(v.available_models) | frozenset(v.loaded_models),
                healthy=v.health == "ok",
            )
            for v in self.cluster.peer_views()
            if v.paired
        ]
        return me, peers

    def locate_model(self, model_id: str) -> Path | None:
        return self.registry.locate(model_id)

    async def load_whole(self, model_id: str, path: Path) -> object:
        return await self._load_model(model_id, source=path)

    @property
    def headroom_bytes(self) -> int:
        return int(self.settings.memory_headroom_gb * 1024**3)

    def shard_coordinator(self, model_id: str) -> str | None:
        return self.cluster.shard_coordinator(model_id)


def no_shards() -> ModelError:
    return ModelError(
        "this node cannot run sharded models (solo or client-only mode)",
        status=409, code="shards_unavailable",
    )  # fmt: skip
