"""Control routes for models on this node and on its peers (`salut models/pull/load/unload`).

    GET  /salut/control/models          this node's name, the cluster's models (where each lives
                                        and is loaded), the transfers and the partial copies
                                        (`partials`: {model, weights, bytes}) of this node
    POST /salut/control/models/pull     {model, from?}          NDJSON: transfer views to the end
    POST /salut/control/models/download {model, revision?, endpoint?}  the same, from the Hub
    POST /salut/control/models/load     {model, on?, keep_alive?, force?}
                                        NDJSON: {"progress", "stage"}... then {"ok", "message"}
    POST /salut/control/models/unload   {model, on?}            {"ok", "message"}

They sit behind the same control token as the pairing commands (the guard in `routes.py`).
A pull runs in the node, not in the request: a `salut pull` that goes away leaves it running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from salut_tui.cluster.control import CONTROL_PREFIX
from salut_tui.cluster.control_http import control_error, json_body
from salut_tui.cluster.remote_models import RemoteLoadResult
from salut_tui.engine.types import ModelError
from salut_tui.events import Event, EventBus, ModelLoadProgressed, TransferChanged
from salut_tui.transfer.partial import PartialCopy
from salut_tui.transfers import Transfers, TransferView
from salut_tui.views import ModelInfo, SelfView


class ModelControl(Protocol):
    """What these routes need of the node."""

    @property
    def events(self) -> EventBus: ...

    @property
    def transfers(self) -> Transfers: ...

    def models(self) -> list[ModelInfo]: ...

    def self_view(self) -> SelfView: ...

    def partial_copies(self) -> list[PartialCopy]: ...

    def pull_model(self, model_id: str, peer: str | None = None) -> str: ...

    def download_model(
        self, model_id: str, *, revision: str | None = None, endpoint: str | None = None
    ) -> str: ...

    async def load_on(
        self, peer: str | None, model_id: str, *, keep_alive: Any, force: bool,
        on_progress: Callable[[float, str], None],
    ) -> RemoteLoadResult: ...  # fmt: skip

    async def unload_on(self, peer: str | None, model_id: str) -> RemoteLoadResult: ...


def transfer_json(view: TransferView) -> dict:
    return dataclasses.asdict(view)


def install(app: web.Application, node: ModelControl) -> None:
    async def models(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "node": node.self_view().name,  # which of the names below is this node
                "models": [dataclasses.asdict(m) for m in node.models()],
                "transfers": [transfer_json(t) for t in node.transfers.all()],
                "partials": [dataclasses.asdict(p) for p in node.partial_copies()],
            }
        )

    async def follow(request: web.Request, start: Callable[[], str]) -> web.StreamResponse:
        """Start a transfer and stream its views until it ends."""
        updates: asyncio.Queue[TransferView] = asyncio.Queue()
        unsubscribe = node.events.subscribe(
            lambda e: updates.put_nowait(e.view) if isinstance(e, TransferChanged) else None
        )
        try:
            transfer_id = start()
            response = await _ndjson(request)
            view = node.transfers.get(transfer_id)
            while view is not None and view.state == "running":
                await _line(response, transfer_json(view))
                view = await updates.get()
                while view.id != transfer_id:
                    view = await updates.get()
            if view is not None:
                await _line(response, transfer_json(view))
            await response.write_eof()
            return response
        finally:
            unsubscribe()

    async def pull(request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return control_error(400, "give the model id", "invalid_request")
        peer = body.get("from")
        return await follow(request, lambda: node.pull_model(model, str(peer) if peer else None))

    async def download(request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return control_error(400, "give the model id", "invalid_request")
        revision, endpoint = body.get("revision"), body.get("endpoint")
        return await follow(
            request,
            lambda: node.download_model(
                model, revision=str(revision) if revision else None,
                endpoint=str(endpoint) if endpoint else None,
            ),
        )  # fmt: skip

    async def load(request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return control_error(400, "give the model id", "invalid_request")
        response = await _ndjson(request)
        progress: asyncio.Queue[dict] = asyncio.Queue()

        def on_progress(fraction: float, stage: str) -> None:
            progress.put_nowait({"progress": fraction, "stage": stage})

        task = asyncio.ensure_future(
            node.load_on(
                body.get("on") or None, model, keep_alive=body.get("keep_alive"),
                force=bool(body.get("force")), on_progress=on_progress,
            )
        )  # fmt: skip
        while not task.done():
            getter = asyncio.ensure_future(progress.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await _line(response, getter.result())
            else:
                getter.cancel()
        while not progress.empty():  # the last steps came with the answer: they go first
            await _line(response, progress.get_nowait())
        result = task.result()
        await _line(response, dataclasses.asdict(result))
        await response.write_eof()
        return response

    async def unload(request: web.Request) -> web.Response:
        body = await json_body(request)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return control_error(400, "give the model id", "invalid_request")
        result = await node.unload_on(body.get("on") or None, model)
        return web.json_response(dataclasses.asdict(result))

    app.router.add_get(f"{CONTROL_PREFIX}/models", models)
    app.router.add_post(f"{CONTROL_PREFIX}/models/pull", pull)
    app.router.add_post(f"{CONTROL_PREFIX}/models/download", download)
    app.router.add_post(f"{CONTROL_PREFIX}/models/load", load)
    app.router.add_post(f"{CONTROL_PREFIX}/models/unload", unload)


def local_load_progress(
    events: EventBus, model_id: str, on_progress: Callable[[float, str], None]
) -> Callable[[], None]:
    """Forward this node's load progress of `model_id`; returns the unsubscribe function."""

    def watch(event: Event) -> None:
        if isinstance(event, ModelLoadProgressed) and event.model_id == model_id:
            on_progress(event.fraction, event.stage)

    return events.subscribe(watch)


def local_result(exc: ModelError) -> RemoteLoadResult:
    error = exc.to_error()
    return RemoteLoadResult(False, error.message, error.code or "", error.status)


async def _ndjson(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    return response


async def _line(response: web.StreamResponse, body: dict) -> None:
    await response.write(json.dumps(body).encode() + b"\n")
