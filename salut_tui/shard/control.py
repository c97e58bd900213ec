"""Control routes for loading and unloading models, sharded or whole (`salut load/unload`).

    POST /salut/control/shard/plan  {"model", "nodes"?, "mode"?}     the plan, nothing started
                                                  (with the copy each node without the files
                                                  would get: `copies`)
    POST /salut/control/shard/copy  {"model", "nodes"?, "mode"?}     NDJSON: the copies the plan
                                                  offers, as transfer views as they go, then
                                                  {"copied": plan} or {"error"}
    POST /salut/control/load        {"model", "shard"?, "nodes"?, "mode"?, "copy"?}
    POST /salut/control/unload      {"model"}     a sharded instance (wherever its coordinator
                                                  is) or the whole model loaded on this node

They sit under /salut/control, so the cluster's control guard (the token in the data dir)
protects them. A whole load that does not fit here says whether a sharded plan would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from salut_tui.engine.types import ModelError
from salut_tui.events import Event, EventBus, TransferChanged
from salut_tui.shard.placement import ShardPlan
from salut_tui.shard.service import Mode, plan_summary

log = logging.getLogger(__name__)

CONTROL = "/salut/control"


class ModelControl(Protocol):
    @property
    def events(self) -> EventBus: ...

    def shard_plan(
        self, model_id: str, nodes: list[str] | None = None, mode: Mode = "pipeline"
    ) -> ShardPlan: ...
    async def load_sharded(
        self,
        model_id: str,
        nodes: list[str] | None = None,
        mode: Mode = "pipeline",
        *,
        copy: bool = False,
    ) -> ShardPlan: ...
    async def copy_for_shard(
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
            plan = node.shard_plan(body["model"], body["nodes"], body["mode"])
            return web.json_response(plan_summary(plan))
        except ModelError as exc:
            return _error(exc)

    async def copy(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        model = body["model"]
        updates: asyncio.Queue[dict] = asyncio.Queue()

        def watch(event: Event) -> None:
            view = event.view if isinstance(event, TransferChanged) else None
            if view is not None and view.kind == "copy" and view.model == model:
                updates.put_nowait(dataclasses.asdict(view))

        unsubscribe = node.events.subscribe(watch)
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
            task = asyncio.ensure_future(node.copy_for_shard(model, body["nodes"], body["mode"]))
            while not task.done():
                getter = asyncio.ensure_future(updates.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    await _line(response, getter.result())
                else:
                    getter.cancel()
            while not updates.empty():
                await _line(response, updates.get_nowait())
            try:
                await _line(response, {"copied": plan_summary(task.result())})
            except ModelError as exc:
                await _line(response, exc.to_error().body())
            await response.write_eof()
            return response
        finally:
            unsubscribe()

    async def load(request: web.Request) -> web.Response:
        body = await _body(request)
        model = body["model"]
        try:
            if body["shard"]:
                done = await node.load_sharded(
                    model, body["nodes"], body["mode"], copy=body["copy"]
                )
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
    app.router.add_post(f"{CONTROL}/shard/copy", copy)
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
    body["copy"] = bool(body.get("copy"))
    body["mode"] = "tensor" if body.get("mode") == "tensor" else "pipeline"
    return body


async def _line(response: web.StreamResponse, body: dict) -> None:
    await response.write(json.dumps(body).encode() + b"\n")


def _error(exc: ModelError, extra: str = "") -> web.Response:
    error = exc.to_error()
    body = error.body()
    body["error"]["message"] = error.message + extra
    return web.json_response(body, status=error.status)
