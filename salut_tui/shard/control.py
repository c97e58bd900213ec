"""Control routes for loading and unloading models, sharded or whole (`salut load/unload`).

    POST /salut/control/shard/plan  {"model", "nodes"?}              the plan, nothing started
    POST /salut/control/load        {"model", "shard"?, "nodes"?, "mode"?}
    POST /salut/control/unload      {"model"}     a sharded instance (wherever its coordinator
                                                  is) or the whole model loaded on this node

They sit under /salut/control, so the cluster's control guard (the token in the data dir)
protects them. A whole load that does not fit here says whether a sharded plan would.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from salut_tui.engine.types import ModelError
from salut_tui.shard.placement import ShardPlan
from salut_tui.shard.service import Mode, plan_summary

log = logging.getLogger(__name__)

CONTROL = "/salut/control"


class ModelControl(Protocol):
    def shard_plan(self, model_id: str, nodes: list[str] | None = None) -> ShardPlan: ...
    async def load_sharded(
        self, model_id: str, nodes: list[str] | None = None, mode: Mode = "pipeline"
    ) -> ShardPlan: ...
    async def unload_sharded(self, model_id: str) -> list[str]: ...
    async def load_model(
        self, model_id: str, *, force: bool = False, source: Path | None = None
    ) -> Any: ...
    async def unload_model(self, model_id: str) -> None: ...
    def loaded_model_ids(self) -> list[str]: ...


def install(app: web.Application, node: ModelControl) -> None:
    async def plan(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            return web.json_response(plan_summary(node.shard_plan(body["model"], body["nodes"])))
        except ModelError as exc:
            return _error(exc)

    async def load(request: web.Request) -> web.Response:
        body = await _body(request)
        model = body["model"]
        try:
            if body["shard"]:
                mode: Mode = "tensor" if body.get("mode") == "tensor" else "pipeline"
                done = await node.load_sharded(model, body["nodes"], mode)
                return web.json_response({"loaded": model, "plan": plan_summary(done)})
            await node.load_model(model)
            return web.json_response({"loaded": model, "plan": None})
        except ModelError as exc:
            if exc.code == "insufficient_memory" and not body["shard"]:
                return _error(exc, _sharded_hint(node, model))
            return _error(exc)

    async def unload(request: web.Request) -> web.Response:
        model = (await _body(request))["model"]
        try:
            if model in node.loaded_model_ids():
                await node.unload_model(model)
                return web.json_response({"unloaded": model, "instances": []})
            stopped = await node.unload_sharded(model)
            return web.json_response({"unloaded": model, "instances": stopped})
        except ModelError as exc:
            return _error(exc)

    app.router.add_post(f"{CONTROL}/shard/plan", plan)
    app.router.add_post(f"{CONTROL}/load", load)
    app.router.add_post(f"{CONTROL}/unload", unload)


def _sharded_hint(node: ModelControl, model: str) -> str:
    try:
        plan = node.shard_plan(model)
    except ModelError:
        return ""
    if plan.world_size < 2:
        return ""
    parts = ", ".join(f"{s.name} layers {s.layer_start}-{s.layer_end}" for s in plan.stages)
    return f"; it fits sharded ({parts}): salut load {model} --shard"


async def _body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise web.HTTPBadRequest(
            text='{"error": {"message": "give \\"model\\"", "type": "invalid_request_error", '
            '"param": "model", "code": "invalid_request"}}',
            content_type="application/json",
        )
    nodes = body.get("nodes")
    body["nodes"] = [str(n) for n in nodes] if isinstance(nodes, list) and nodes else None
    body["shard"] = bool(body.get("shard"))
    return body


def _error(exc: ModelError, extra: str = "") -> web.Response:
    error = exc.to_error()
    body = error.body()
    body["error"]["message"] = error.message + extra
    return web.json_response(body, status=error.status)
