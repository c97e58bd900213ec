"""Sharded models as the node offers them: plan and load, unload from any node, serve, list.

The node satisfies `ShardHost` (what this node and its peers look like now, where a model's
files are); the `ShardManager` runs the instances. Refusals are OpenAI-shaped `ModelError`s: 404
for a model this node has no files for, 507 insufficient_memory naming each node's shortfall,
409 for a participant without the files, 503 shard_failed when the instance could not start.

When a ready instance fails (a participant died, its link was lost), the coordinator plans again
on the nodes that remain (without the one that failed, when it is known) and loads again, whole
here if it now fits here alone; requests that had not produced a token yet wait for that and go
where the routing decision then says. A model that no longer fits gets the usual 507 from the
next request's load. One re-plan per failure, and none for a failure soon after a re-plan (a
participant that keeps crashing must not start a loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

from salut_tui.engine import errors
from salut_tui.engine.types import Chunk, Error, GenerationRequest, ModelError, Token
from salut_tui.shard.copies import copied, offer_copies
from salut_tui.shard.instance import ShardFailed, ShardInstance
from salut_tui.shard.join import UNLOAD
from salut_tui.shard.manager import ShardManager
from salut_tui.shard.placement import CopyOffer, PlacementRefused, ShardPlan, StageAssignment
from salut_tui.shard.planning import Candidate, plan_load
from salut_tui.shard.shape import model_shape, weight_layout
from salut_tui.views import ShardView

log = logging.getLogger(__name__)

Mode = Literal["pipeline", "tensor"]
REPLAN_QUIET = 30.0  # seconds after a re-plan during which a new failure is not re-planned
REPLAN_WAIT = 120.0  # how long a request that had no token yet waits for the re-plan


class ShardHost(Protocol):
    def shard_candidates(self, model_id: str) -> tuple[Candidate, list[Candidate]]:
        """This node and its paired peers, with free memory and the models they have."""
        ...

    def locate_model(self, model_id: str) -> Path | None: ...

    @property
    def headroom_bytes(self) -> int: ...

    def shard_coordinator(self, model_id: str) -> str | None:
        """A healthy peer that coordinates a sharded instance of `model_id`, if any."""
        ...

    async def load_whole(self, model_id: str, path: Path) -> object:
        """Load the model whole in this node's engine (a re-plan that fits here alone)."""
        ...

    async def copy_files(self, model_id: str, offer: CopyOffer) -> None:
        """Carry out `offer`: the peer copies those files of the model from this node (raises
        ModelError in words when it cannot)."""
        ...


def plan_summary(plan: ShardPlan) -> dict:
    return {
        "model": plan.model_id,
        "num_layers": plan.num_layers,
        "nodes": [
            {"id": s.node_id, "name": s.name, "rank": s.rank,
             "layers": [s.layer_start, s.layer_end], "memory_bytes": s.bytes_needed,
             "usable_bytes": s.usable_bytes, "has_files": s.has_model_files}
            for s in plan.stages
        ],
        "copies": [
            {"rank": c.rank, "id": c.node_id, "name": c.name, "files": list(c.files),
             "bytes": c.bytes, "whole": c.whole}
            for c in plan.copies
        ],
    }  # fmt: skip


def plan_from_summary(body: dict) -> ShardPlan:
    """A plan as `plan_summary` wrote it (an attached UI reads its node's plan this way)."""
    stages = tuple(
        StageAssignment(
            int(n["rank"]), str(n["id"]), str(n["name"]), int(n["layers"][0]),
            int(n["layers"][1]), int(n["memory_bytes"]), int(n["usable_bytes"]),
            bool(n.get("has_files", True)),
        )
        for n in body["nodes"]
    )  # fmt: skip
    copies = tuple(
        CopyOffer(
            int(c["rank"]), str(c["id"]), str(c["name"]), tuple(str(f) for f in c["files"]),
            int(c["bytes"]), bool(c["whole"]),
        )
        for c in body.get("copies", ())
    )  # fmt: skip
    return ShardPlan(str(body["model"]), int(body["num_layers"]), stages, copies)


class ShardService:
    def __init__(self, manager: ShardManager, host: ShardHost) -> None:
        self.manager = manager
        self.host = host
        manager.on_failed = self._failed
        self._loads: dict[str, tuple[list[str] | None, Mode]] = {}  # model -> how it was asked
        self._replans: dict[str, asyncio.Task[bool]] = {}
        self._replanned_at: dict[str, float] = {}

    def plan(
        self,
        model_id: str,
        nodes: Sequence[str] | None = None,
        exclude: frozenset[str] = frozenset(),
        mode: Mode = "pipeline",
    ) -> tuple[ShardPlan, Path]:
        """The plan for loading `model_id` sharded from this node (never on the peers in
        `exclude`, by node id), with the copy each participant without the files would need;
        raises ModelError."""
        path = self.host.locate_model(model_id)
        if path is None:
            raise ModelError.of(
                errors.model_not_found(model_id, "the coordinating node needs its files")
            )
        try:
            shape = model_shape(path, model_id)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot read the shape of '{model_id}': {exc}") from None
        me, peers = self.host.shard_candidates(model_id)
        peers = [p for p in peers if p.node_id not in exclude]
        plan = plan_load(shape, me, peers, nodes=nodes, headroom_bytes=self.host.headroom_bytes)
        if isinstance(plan, PlacementRefused):
            raise ModelError(
                plan.message, status=507, code="insufficient_memory", type="server_error"
            )
        if plan.missing_files:
            try:
                layout = weight_layout(path)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("no copy to offer for '%s': %s", model_id, exc)
            else:
                held = {p.node_id: p.partial for p in peers if p.partial}
                plan = offer_copies(plan, layout, held, mode)
        return plan, path

    async def load(
        self, plan: ShardPlan, path: Path, mode: Mode = "pipeline", *, copy: bool = False
    ) -> ShardView:
        """A load someone asked for: it is what a re-plan after a failure tries to restore.
        `copy`: the participants without the files get the copy the plan offers them first."""
        if copy:
            plan = await self.copy_first(plan)
        self._loads[plan.model_id] = ([s.name for s in plan.stages], mode)
        self._replanned_at.pop(plan.model_id, None)
        return await self._start(plan, path, mode)

    async def copy_first(self, plan: ShardPlan) -> ShardPlan:
        """Carry out every copy `plan` offers, at once; the plan with those stages served."""
        offers = plan.copies
        results = await asyncio.gather(
            *(self.host.copy_files(plan.model_id, offer) for offer in offers),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        for offer in offers:
            plan = copied(plan, offer)
        return plan

    async def _start(self, plan: ShardPlan, path: Path, mode: Mode) -> ShardView:
        missing = plan.missing_files_message()
        if missing is not None:
            raise ModelError(missing, status=409, code="model_files_missing")
        if self.manager.coordinating(plan.model_id) is not None:
            raise ModelError(
                f"'{plan.model_id}' is already loaded as a sharded model", status=409,
                code="already_loaded",
            )  # fmt: skip
        try:
            instance = await self.manager.load(plan, path, mode=mode)
        except ShardFailed as exc:
            raise ModelError.of(
                _failed(f"could not start '{plan.model_id}' sharded: {exc}")
            ) from None
        return self.manager.view(instance)

    async def unload(self, model_id: str) -> list[str]:
        """End the sharded instance of `model_id`, wherever its coordinator is."""
        if self.manager.coordinating(model_id) is not None:
            return await self.manager.unload(model_id)
        peer = self.host.shard_coordinator(model_id)
        if peer is None:
            raise ModelError.of(errors.model_not_found(model_id, "no sharded instance of it"))
        stream = await self.manager.peers.open_stream(peer, UNLOAD, {"model": model_id})
        try:
            async for payload in stream:
                return list(json.loads(payload)["unloaded"])
        finally:
            await stream.aclose()
        return []

    def coordinates(self, model_id: str) -> bool:
        instance = self.manager.coordinating(model_id)
        return instance is not None and instance.state == "ready"

    async def generate(
        self,
        request: GenerationRequest,
        reroute: Callable[[GenerationRequest], AsyncGenerator[Chunk, None]],
    ) -> AsyncGenerator[Chunk, None]:
        """Chunks from the sharded instance; a failure before the first token waits for the
        re-plan and sends the request where routing then says (`reroute`)."""
        started = False
        chunks = self.manager.generate(request.model, request)
        try:
            async for chunk in chunks:
                failed_early = isinstance(chunk, Error) and chunk.code == "shard_failed"
                if failed_early and not started and await self._replanned(request.model):
                    async for retried in reroute(request):
                        yield retried
                    return
                started = started or isinstance(chunk, Token)
                yield chunk
        finally:
            await chunks.aclose()

    async def _replanned(self, model_id: str) -> bool:
        task = self._replans.get(model_id)
        if task is None:
            return False
        try:
            return await asyncio.wait_for(asyncio.shield(task), REPLAN_WAIT)
        except TimeoutError:
            return False

    # ---- re-planning after a failure ----------------------------------------------------------
    def _failed(self, instance: ShardInstance) -> None:
        model = instance.order.model_id
        last = self._replanned_at.get(model, float("-inf"))
        if not instance.was_ready or time.monotonic() - last < REPLAN_QUIET:
            return
        nodes, mode = self._loads.get(model, (None, "pipeline"))
        if nodes is not None and instance.blamed is not None:
            gone = {p.name for p in instance.order.participants if p.node_id == instance.blamed}
            nodes = [n for n in nodes if n not in gone]
        me = instance.order.coordinator.name
        if nodes is not None and not [n for n in nodes if n != me]:
            nodes = None  # nobody named is left: the fewest nodes that fit, maybe this one alone
        self._replanned_at[model] = time.monotonic()
        self._replans[model] = asyncio.get_running_loop().create_task(
            self._replan(instance, model, nodes, mode)
        )

    async def _replan(
        self, failed: ShardInstance, model: str, nodes: list[str] | None, mode: Mode
    ) -> bool:
        await failed.wait_stopped()
        exclude = frozenset({failed.blamed} if failed.blamed else ())
        try:
            plan, path = self.plan(model, nodes, exclude, mode)
            if plan.world_size == 1:
                await self.host.load_whole(model, path)
            else:
                await self._start(plan, path, mode)
        except ModelError as exc:
            log.warning("re-planning '%s' after a failure: %s", model, exc.message)
            return False
        finally:
            self._replanned_at[model] = time.monotonic()
        where = ", ".join(s.name for s in plan.stages)
        log.info("'%s' re-planned after a failure (%s): now on %s", model, failed.reason, where)
        return True

    def views(self) -> tuple[ShardView, ...]:
        return tuple(self.manager.views())


def _failed(message: str) -> Error:
    return Error.of(503, message, code="shard_failed")
