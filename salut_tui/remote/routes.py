"""Control routes an attached UI reads: one server-sent-event stream of the node's events with a
snapshot of its views once a second, and the model actions the screens call.

    GET  /salut/control/ui/events          text/event-stream: `snapshot`, `node` (an event) and
                                           `log` (a log record) messages
    GET  /salut/control/ui/models          every model in the cluster (scans: on demand only)
    POST /salut/control/ui/models/load     {"model": id, "force": bool}
    POST /salut/control/ui/models/unload   {"model": id}

and the routes that act (chat, GGUF import, pull, settings: `action_routes.py`).

They sit under the control prefix, so they need the token from the node's data dir (the same
trust as `salut pair/peers/unpair`); a node without a cluster installs the same guard here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from salut_tui.cluster.cluster import Cluster
from salut_tui.cluster.control import CONTROL_HEADER, CONTROL_PREFIX
from salut_tui.cluster.control_http import control_error
from salut_tui.config import Settings
from salut_tui.engine.engine import Engine
from salut_tui.engine.loader import LoadedModelInfo
from salut_tui.engine.types import ModelError
from salut_tui.events import Event, EventBus
from salut_tui.remote.action_routes import ActingNode, install_actions
from salut_tui.remote.wire import EVENT_TYPES, UI_PREFIX, WIRE_VERSION, event_to_json
from salut_tui.transfers import Transfers
from salut_tui.views import ClusterView, ModelInfo, NodeStats, to_json

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 1.0  # seconds between the views sent on the event stream
QUEUE_LIMIT = 10_000  # events waiting for a slow attached UI before it is dropped


class KeepAliveClock(Protocol):
    def time_left(self, model_id: str, now: float) -> float | None: ...


class ControlledNode(ActingNode, Protocol):
    """What these routes read from the node (the composition root satisfies it)."""

    settings: Settings
    config_path: Path | None
    events: EventBus
    engine: Engine | None
    cluster: Cluster | None
    blas: str
    version: str
    transfers: Transfers

    @property
    def keep_alive(self) -> KeepAliveClock: ...

    @property
    def port(self) -> int: ...

    def stats(self) -> NodeStats: ...

    def cluster_view(self) -> ClusterView: ...

    def models(self) -> list[ModelInfo]: ...

    async def load_model(self, model_id: str, *, force: bool = False) -> LoadedModelInfo: ...

    async def unload_model(self, model_id: str) -> None: ...

    @property
    def log_level(self) -> str: ...

    def reset_log_level(self) -> None: ...


# Set on records an attached UI logs again in its own process (a test may run both in one):
# they are never forwarded back.
FORWARDED = "salut_forwarded"


class ForwardLogs(logging.Handler):
    """The node's log records, as JSON, to an attached UI (from any thread: `send` must be
    thread-safe). The node's logger levels decide what exists; this adds no filter."""

    def __init__(self, send: Callable[[dict[str, Any]], object]) -> None:
        super().__init__(logging.DEBUG)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, FORWARDED, False):
            return
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                message = f"{message}: {type(exc).__name__}: {exc}"
            self._send(
                {
                    "created": record.created,
                    "levelno": record.levelno,
                    "levelname": record.levelname,
                    "name": record.name,
                    "message": message,
                }
            )
        except Exception:
            self.handleError(record)


def snapshot(node: ControlledNode) -> dict[str, Any]:
    """Everything the screens read once a second, as JSON."""
    engine, cluster = node.engine, node.cluster
    loaded = engine.loaded() if engine is not None else []
    now = time.monotonic()
    return {
        "wire": WIRE_VERSION,
        "settings": node.settings.model_dump(mode="json"),
        "config_path": str(node.config_path) if node.config_path else None,
        "stats": dataclasses.asdict(node.stats()),
        "cluster": to_json(node.cluster_view()),
        "has_cluster": cluster is not None,
        "pairing": cluster.pairing_status().to_json() if cluster is not None else None,
        "loaded": [
            {"model_id": m.model_id, "memory_bytes": m.memory_bytes, "size_bytes": m.size_bytes}
            for m in loaded
        ],
        # Seconds until each loaded model's idle unload as of now (None: kept loaded); the
        # client counts down from the moment it reads them.
        "keep_alive": {m.model_id: node.keep_alive.time_left(m.model_id, now) for m in loaded},
        "transfers": [dataclasses.asdict(t) for t in node.transfers.all()],
        "blas": node.blas,
        "port": node.port,
        "version": node.version,
        "log_level": node.log_level,  # DEBUG while an attached UI's Logs screen asks for it
    }


def install(app: web.Application, node: ControlledNode, token: Callable[[], str]) -> None:
    """Add the routes; on a node without a cluster, also the token check of the control prefix
    (`token()` is the node's control token)."""
    streams = 0  # attached UIs: when the last one goes, the node's log level goes back

    async def events(request: web.Request) -> web.StreamResponse:
        nonlocal streams
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(QUEUE_LIMIT)
        overflowed = False
        loop = asyncio.get_running_loop()

        def put(kind: str, data: dict[str, Any]) -> None:
            nonlocal overflowed
            if queue.full():  # a UI that does not read: end its stream (it reconnects)
                overflowed = True
            else:
                queue.put_nowait((kind, data))

        forward = ForwardLogs(lambda data: loop.call_soon_threadsafe(put, "log", data))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        def on_event(event: Event) -> None:
            if type(event).__name__ in EVENT_TYPES:
                put("node", event_to_json(event))

        unsubscribe = node.events.subscribe(on_event)
        logging.getLogger().addHandler(forward)
        streams += 1
        try:
            await _send(response, "snapshot", snapshot(node))
            next_snapshot = loop.time() + SNAPSHOT_EVERY
            while not overflowed:
                try:
                    timeout = max(0.0, next_snapshot - loop.time())
                    kind, data = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    await _send(response, "snapshot", snapshot(node))
                    next_snapshot = loop.time() + SNAPSHOT_EVERY
                    continue
                await _send(response, kind, data)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            logging.getLogger().removeHandler(forward)
            unsubscribe()
            streams -= 1
            if streams == 0:  # no UI left to read DEBUG records: the configured level again
                node.reset_log_level()
        return response

    async def hello(request: web.Request) -> web.Response:
        """Is this the node, and does it take the token? (`salut` asks before attaching.)"""
        return web.json_response(
            {
                "name": node.settings.display_name(),
                "version": node.version,
                "wire": WIRE_VERSION,
                "log_level": node.log_level,
            }
        )

    async def models(request: web.Request) -> web.Response:
        return web.json_response([dataclasses.asdict(m) for m in node.models()])

    async def load(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            info = await node.load_model(str(body["model"]), force=bool(body.get("force")))
        except KeyError:
            return control_error(400, "give 'model'", "invalid_request")
        except ModelError as exc:
            return web.json_response(exc.to_error().body(), status=exc.status)
        return web.json_response({"loaded": info.model_id, "memory_bytes": info.memory_bytes})

    async def unload(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            await node.unload_model(str(body["model"]))
        except KeyError:
            return control_error(400, "give 'model'", "invalid_request")
        except ModelError as exc:
            return web.json_response(exc.to_error().body(), status=exc.status)
        return web.json_response({"unloaded": body["model"]})

    if node.cluster is None:  # the cluster's routes guard the control prefix otherwise

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path.startswith(CONTROL_PREFIX):
                given = request.headers.get(CONTROL_HEADER, "")
                if not hmac.compare_digest(given.encode(), token().encode()):
                    return control_error(
                        403, "control routes need the data dir's token", "forbidden"
                    )
            return await handler(request)

        app.middlewares.append(guard)
    app.router.add_get(f"{UI_PREFIX}/hello", hello)
    app.router.add_get(f"{UI_PREFIX}/events", events)
    app.router.add_get(f"{UI_PREFIX}/models", models)
    app.router.add_post(f"{UI_PREFIX}/models/load", load)
    app.router.add_post(f"{UI_PREFIX}/models/unload", unload)
    install_actions(app, node)


async def _send(response: web.StreamResponse, kind: str, data: dict[str, Any]) -> None:
    await response.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())


async def _body(request: web.Request) -> dict:
    with contextlib.suppress(ValueError):
        body = await request.json()
        if isinstance(body, dict):
            return body
    return {}
