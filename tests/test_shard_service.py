"""The shard service over three in-process nodes with real runners: planning from what the node
knows, refusals, and the re-plan after a participant fails (the failed node left out), with a
request that had no token yet served by the new instance."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from salut_tui.engine.types import Chunk, Finish, GenerationRequest, ModelError, SamplingParams
from salut_tui.shard.planning import Candidate
from salut_tui.shard.service import ShardService
from salut_tui.shard.shape import model_shape
from tests.link_mesh import Mesh
from tests.test_shard_manager import _managers, _until


class Host:
    """What the node would say: this node and its peers, and where the model's files are."""

    def __init__(self, mesh: Mesh, model_id: str, model: Path, free: dict[str, int]) -> None:
        self.mesh, self.model_id, self.model, self.free = mesh, model_id, model, free
        self.whole: list[str] = []

    def shard_candidates(self, model_id: str) -> tuple[Candidate, list[Candidate]]:
        me, *peers = [
            Candidate(n.node_id, n.name, self.free[n.name], frozenset({self.model_id}))
            for n in self.mesh.nodes
        ]
        return me, peers

    def locate_model(self, model_id: str) -> Path | None:
        return self.model if model_id == self.model_id else None

    headroom_bytes = 0

    def shard_coordinator(self, model_id: str) -> str | None:
        return None

    async def load_whole(self, model_id: str, path: Path) -> object:
        self.whole.append(model_id)
        return None


def _request(model_id: str) -> GenerationRequest:
    sampling = SamplingParams(temperature=0, max_tokens=8)
    return GenerationRequest(model=model_id, prompt="hello", sampling=sampling)


async def _collect(service: ShardService, request: GenerationRequest) -> list[Chunk]:
    async def reroute(r: GenerationRequest):  # type: ignore[no-untyped-def]
        async for chunk in service.generate(r, reroute):
            yield chunk

    return [c async for c in service.generate(request, reroute)]


async def test_replan_without_the_failed_node_and_retry_a_request(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    mesh = await Mesh.build(tmp_path, ["a", "b", "c"])
    managers = _managers(mesh, tmp_path, tiny_model_path)
    total = model_shape(tiny_model_path, tiny_model_id).total_bytes
    # a alone cannot hold it: the plan names b; when b fails, the re-plan takes c.
    host = Host(
        mesh, tiny_model_id, tiny_model_path, {"a": total // 2, "b": total * 4, "c": total * 3}
    )
    service = ShardService(managers[0], host)
    try:
        with pytest.raises(ModelError) as unknown:
            service.plan("nope")
        assert unknown.value.status == 404
        plan, path = service.plan(tiny_model_id, ["b"])
        assert [s.name for s in plan.stages] == ["a", "b"]
        await service.load(plan, path)
        before = await _collect(service, _request(tiny_model_id))
        assert isinstance(before[-1], Finish)

        b_part = next(iter(managers[1].instances.values())).supervisor
        assert b_part is not None and b_part.process is not None
        b_part.process.send_signal(signal.SIGKILL)
        # Sent as the failure lands: no token yet, so it waits for the re-plan and is retried.
        after = await asyncio.wait_for(_collect(service, _request(tiny_model_id)), 120)
        assert after == before
        (view,) = managers[0].views()
        assert [p.name for p in view.participants] == ["a", "c"]  # b failed: left out
        assert await _until(lambda: not managers[1].instances, 10)
        assert host.whole == []

        with pytest.raises(ModelError) as again:
            await service.load(*service.plan(tiny_model_id))
        assert again.value.status == 409 and again.value.code == "already_loaded"
        assert await service.unload(tiny_model_id) == [view.instance]
    finally:
        for m in managers:
            await m.close()
        await mesh.close()


async def test_a_plan_that_cannot_fit_is_a_507_naming_each_node(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    mesh = await Mesh.build(tmp_path, ["a", "b"])
    managers = _managers(mesh, tmp_path, tiny_model_path)
    host = Host(mesh, tiny_model_id, tiny_model_path, {"a": 1000, "b": 1000})
    service = ShardService(managers[0], host)
    try:
        with pytest.raises(ModelError) as refused:
            service.plan(tiny_model_id)
        assert refused.value.status == 507 and refused.value.code == "insufficient_memory"
        assert "a would need" in refused.value.message and "b would need" in refused.value.message
    finally:
        await mesh.close()
