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
from salut_tui.cluster.pull import PullProgress
from salut_tui.config import Settings, ShardSetting
from salut_tui.engine.registry import ModelRegistry
from salut_tui.engine.types import ModelError
from salut_tui.events import EventBus, ShardsChanged
from salut_tui.shard.join import JoinOrder
from salut_tui.shard.manager import ShardManager
from salut_tui.shard.placement import CopyOffer, ShardPlan
from salut_tui.shard.planning import Candidate
from salut_tui.shard.service import Mode, ShardService
from salut_tui.shard.shape import weight_layout
from salut_tui.shard.weights import StageNeeds
from salut_tui.transfer.manifest import TransferError, is_weight_file
from salut_tui.transfer.partial import partial_directory, read_marker
from salut_tui.transfers import Transfers
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
        transfers: Transfers,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.cluster = cluster
        self.transfers = transfers
        self._free_memory = free_memory
        self._local_models = local_models
        self._load_model = load_model
        manager = ShardManager(
            cluster.node_id, settings.data_path(), cluster, registry.locate,
            on_change=lambda: events.publish(ShardsChanged("shards")),
            resolve_part=self.partial_for,
        )  # fmt: skip
        self.service = ShardService(manager, self)
        cluster.shards = manager  # the links hand shard.* methods and tunnels to it

    # ---- what the control routes and the UI call --------------------------------------------
    def plan(
        self, model_id: str, nodes: list[str] | None = None, mode: Mode = "pipeline"
    ) -> ShardPlan:
        return self.service.plan(model_id, nodes, mode=mode)[0]

    async def load(
        self,
        model_id: str,
        nodes: list[str] | None = None,
        mode: Mode = "pipeline",
        *,
        copy: bool = False,
    ) -> ShardPlan:
        """Load `model_id` split over this node (coordinator) and peers; a plan of one node
        (it fits here, and no nodes were named) loads it whole instead. `copy`: a participant
        without the files first gets the copy the plan offers (its layers' files)."""
        plan, path = self.service.plan(model_id, nodes, mode=mode)
        if plan.world_size == 1:
            await self._load_model(model_id, source=path)
        else:
            await self.service.load(plan, path, mode, copy=copy)
        return plan

    async def copy(
        self, model_id: str, nodes: list[str] | None = None, mode: Mode = "pipeline"
    ) -> ShardPlan:
        """Only the copies the plan offers (the load comes after: `load(..., copy=True)` copies
        what may still be missing then)."""
        plan, _ = self.service.plan(model_id, nodes, mode=mode)
        return await self.service.copy_first(plan)

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
    async def copy_files(self, model_id: str, offer: CopyOffer) -> None:
        """The peer of `offer` copies its files of the model from this node; the copy shows
        as a transfer (kind "copy", to that peer) like a pull does."""
        transfer_id = self.transfers.start("copy", model_id, offer.name)

        def report(p: PullProgress) -> None:
            self.transfers.update(transfer_id, p.done, p.total, p.received, p.stage)

        files = None if offer.whole else frozenset(offer.files)
        try:
            partial = await self.cluster.send_copy(offer.node_id, model_id, files, report)
        except TransferError as exc:
            self.transfers.fail(transfer_id, str(exc))
            raise ModelError(
                f"could not copy '{model_id}' to {offer.name}: {exc}", status=502,
                code="copy_failed", type="server_error",
            ) from None  # fmt: skip
        what = "its layers' files" if partial else "the whole model"
        self.transfers.finish(transfer_id, f"{what} on {offer.name}")
        log.info("copied %s of %s to %s", what, model_id, offer.name)

    def partial_for(self, order: JoinOrder) -> Path | None:
        """This node's partial copy of the model, when it holds every file of its part."""
        try:
            directory = partial_directory(self.settings.models_path(), order.model_id)
        except TransferError:
            return None
        marker = read_marker(directory)
        if marker is None:
            return None
        try:
            layout = weight_layout(directory)
        except (OSError, ValueError, KeyError):
            return None
        rank = order.rank
        needs = StageNeeds(
            order.me.layer_start, order.me.layer_end, first=rank == 0,
            last=rank == order.world_size - 1, whole=order.mode == "tensor",
        )  # fmt: skip
        held = {f.name for f in marker.files if is_weight_file(f.name)}
        return directory if layout.covered(held, needs) else None

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
                partial=self.cluster.partial_weights(v.id, model_id),
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
