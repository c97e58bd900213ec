"""The composition root: one Node wires the engine, the API server, the cluster and pairing.

Headless (`salut serve`) and the terminal UI start the same Node (see `salut_tui.run`); the UI
only subscribes to `node.events` and calls the public methods below. Every request path (API, UI
chat, a peer's proxied request) goes through `Node.generate`, which gathers the routing facts once,
asks `salut_tui.routing.decide` where the request goes, and publishes the stream events.

This is the only module that knows every part: the API sees the node through `ServingNode`, the
cluster through `LocalNode`, both narrow protocols.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any, assert_never

from aiohttp import web

from salut_tui import __version__
from salut_tui.api.app import create_app
from salut_tui.api.auth import key_matches
from salut_tui.blas import detect_active_blas
from salut_tui.cluster import model_routes
from salut_tui.cluster import routes as cluster_routes
from salut_tui.cluster.cluster import Cluster
from salut_tui.cluster.control import CONTROL_TOKEN_FILE, write_control_token
from salut_tui.config import Settings, default_config_path
from salut_tui.engine import errors
from salut_tui.engine.engine import Engine
from salut_tui.engine.gguf_import import import_gguf
from salut_tui.engine.loader import LoadedModelInfo
from salut_tui.engine.memory import memory_status
from salut_tui.engine.registry import ModelRegistry
from salut_tui.engine.types import Chunk, Error, GenerationRequest, ModelError
from salut_tui.events import EventBus, KeepAliveChanged
from salut_tui.keepalive import KeepAlive, parse_keep_alive
from salut_tui.log_levels import LoggerLevels, level_number
from salut_tui.node_models import ModelActions
from salut_tui.node_shards import NodeShards, no_shards
from salut_tui.remote import routes as remote_routes
from salut_tui.routing import (
    LoadLocally,
    Local,
    NotFound,
    Peer,
    PeerUnreachable,
    Route,
    RouteFacts,
    Sharded,
    decide,
)
from salut_tui.settings_change import SavedSettings, change_settings
from salut_tui.shard import control as shard_control
from salut_tui.shard.placement import ShardPlan
from salut_tui.shard.service import Mode
from salut_tui.shutdown import ShutdownGate
from salut_tui.startup import log_start_hints
from salut_tui.stream_events import with_stream_events
from salut_tui.supervisor import Supervisor
from salut_tui.transfer.partial import PartialCopy, partial_copies
from salut_tui.transfers import Transfers
from salut_tui.views import ClusterView, ModelInfo, NodeStats, SelfView

__all__ = ["ModelInfo", "Node", "NodeStats"]

log = logging.getLogger(__name__)

# One line per API request on the aiohttp.access logger (stderr headless, the Logs screen in the
# UI): client, request line, status, bytes, seconds (a stream is logged when it ends).
ACCESS_LOG_FORMAT = '%a "%r" %s %b bytes %Tf s'


class Node(ModelActions):
    attached = False  # the UI runs in this process: quitting it stops the node

    def __init__(self, settings: Settings, *, config_path: Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.events = EventBus()
        self.registry = ModelRegistry(settings)
        self.engine: Engine | None = (
            None if settings.mode == "client-only" else Engine(settings, self.registry, self.events)
        )
        self.transfers = Transfers(self.events)  # pulls, downloads, copies for sharding
        # Identity, trust, discovery, peer links, proxying: every mode but solo.
        self.cluster: Cluster | None = (
            None
            if settings.mode == "solo"
            else Cluster(self, settings, self.events, self.transfers)
        )
        # Sharded models: a node with a cluster and an engine can coordinate or take part.
        self.shards: NodeShards | None = None
        if self.cluster is not None and self.engine is not None:
            self.shards = NodeShards(
                settings, self.registry, self.cluster, self.events,
                free_memory=lambda: self.stats().memory_available,
                local_models=self.local_models, load_model=self.load_model,
                transfers=self.transfers,
            )  # fmt: skip
        self.started_at = time.time()
        self.version = __version__
        self.blas = detect_active_blas()  # shown in logs, the UI and /v1/cluster
        self.port: int = settings.port
        self._runner: web.AppRunner | None = None
        self._in_flight = 0  # requests in Node.generate: local and proxied alike
        self._tasks = Supervisor("node")
        self._stopping = False
        self.gate = ShutdownGate()  # closed by shutdown.drain: new requests get 503
        self.keep_alive = KeepAlive(parse_keep_alive(settings.keep_alive))
        self.log_levels = LoggerLevels()  # the Logs screen's DEBUG, while a UI asks for it
        self.events.subscribe(self._on_model_event)
        # The control routes' token (`salut pair`, `salut attach`), written 0600 into the data dir.
        self.control_token = (
            self.cluster.control_token if self.cluster is not None else secrets.token_urlsafe(24)
        )

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self, *, preload: list[str] | None = None) -> None:
        """Start the engine thread and the API server; preload models in the background."""
        self.started_at = time.time()
        if self.engine is not None:
            await self.engine.start()
        app = create_app(self)
        if self.cluster is not None:  # peer and control routes beside /v1
            cluster_routes.install(app, self.cluster)
            model_routes.install(app, self)
            shard_control.install(app, self)  # salut load/unload (sharded or whole)
        remote_routes.install(app, self, lambda: self.control_token)  # `salut attach`
        self._runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=5.0, access_log_format=ACCESS_LOG_FORMAT
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses  # the port the OS picked when settings.port is 0
        self.port = addresses[0][1] if addresses else self.settings.port
        if self.cluster is not None:  # cluster plug-in: needs the bound port to announce
            await self.cluster.start()  # writes the control token file too
        else:
            write_control_token(self.settings, self.port, self.control_token)
        log.info(
            "Salut %s serving the API on http://%s:%d/v1",
            __version__,
            self.settings.host,
            self.port,
        )
        log.info("BLAS in use: %s", self.blas)
        self._tasks.keep_running(self._unload_idle, name="idle unload")
        preload = preload if preload is not None else self.settings.preload
        log_start_hints(self.settings, self.engine is not None, preload, self.registry)
        for model_id in preload:
            self._tasks.spawn(self._preload(model_id), name=f"preload {model_id}")
        if self.shards is not None:  # [[shard]] tables, once their peers are linked
            for shard in self.settings.shard:
                self._tasks.spawn(self.shards.preload(shard), name=f"shard {shard.model}")

    async def stop(self) -> None:
        """End in-flight streams with a proper finish, stop the server, then the engine."""
        if self._stopping:
            return
        self._stopping = True
        await self._tasks.stop()
        if self.shards is not None:  # runners stop; peers learn it from the join streams
            await self.shards.close()
        if self.engine is not None:
            await self.engine.stop()  # streams get their Finish before the server goes away
        if self.cluster is not None:  # cluster plug-in: close links so their handlers return
            await self.cluster.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.cluster is None:  # the cluster removes its own
            (self.settings.data_path() / CONTROL_TOKEN_FILE).unlink(missing_ok=True)
        log.info("node stopped")
        self.reset_log_level()

    async def _preload(self, model_id: str) -> None:
        try:
            await self.load_model(model_id)
        except ModelError as exc:
            log.error("could not preload %s: %s", model_id, exc)

    # ---- models ------------------------------------------------------------------------
    async def load_model(
        self,
        model_id: str,
        *,
        force: bool = False,
        source: Path | None = None,
        keep_alive: str | int | float | None = None,
    ) -> LoadedModelInfo:
        """Load a model here; `keep_alive` (a duration, seconds, -1) overrides the configured
        idle time for this load."""
        if self.engine is None:
            raise ModelError(
                "this node runs in client-only mode and loads no models",
                status=409,
                code="client_only",
            )
        try:
            seconds = parse_keep_alive(keep_alive) if keep_alive is not None else None
        except ValueError as exc:
            raise ModelError(str(exc), status=400, code="invalid_keep_alive") from None
        info = await self.engine.load(model_id, force=force, source=source)
        if keep_alive is not None:
            self.keep_alive.loaded(model_id, time.monotonic(), seconds)
            self.events.publish(KeepAliveChanged(model_id))
        return info

    # ---- sharded models (salut_tui.node_shards does the work) -------------------------------
    def _shard_side(self) -> NodeShards:
        if self.shards is None:
            raise no_shards()
        return self.shards

    def shard_plan(
        self, model_id: str, nodes: list[str] | None = None, mode: Mode = "pipeline"
    ) -> ShardPlan:
        return self._shard_side().plan(model_id, nodes, mode)

    async def load_sharded(
        self,
        model_id: str,
        nodes: list[str] | None = None,
        mode: Mode = "pipeline",
        *,
        copy: bool = False,
    ) -> ShardPlan:
        return await self._shard_side().load(model_id, nodes, mode, copy=copy)

    async def copy_for_shard(
        self, model_id: str, nodes: list[str] | None = None, mode: Mode = "pipeline"
    ) -> ShardPlan:
        return await self._shard_side().copy(model_id, nodes, mode)

    async def unload_sharded(self, model_id: str) -> list[str]:
        return await self._shard_side().unload(model_id)

    async def unload_model(self, model_id: str) -> None:
        if self.engine is None:
            raise ModelError.of(errors.model_not_loaded(model_id))
        await self.engine.unload(model_id)

    async def import_gguf(
        self,
        gguf_path: Path,
        model_id: str,
        *,
        dtype: str = "float32",
        progress: Callable[[float, str], None] | None = None,
    ) -> Path:
        """Convert a GGUF file into `<models_dir>/<org>/<name>` (MLX work: on the engine's
        thread when there is one). `progress` is called from that thread."""
        out = self.settings.models_path().joinpath(*model_id.split("/", 1))

        def convert() -> Path:
            return import_gguf(gguf_path, out, model_id=model_id, dtype=dtype, progress=progress)

        if self.engine is not None:
            return await self.engine.run_on_mlx_thread(convert)
        return await asyncio.to_thread(convert)

    async def change_settings(self, changes: Mapping[str, Any]) -> SavedSettings:
        """Save changed settings into this node's config file and apply the live ones."""
        path = self.config_path or default_config_path()
        saved = change_settings(self.settings, path, changes)
        self.config_path = path
        return saved

    # ---- log level ------------------------------------------------------------------------
    def set_log_level(self, name: str) -> None:
        """Salut's loggers at `name` until `reset_log_level` (the UI's Logs screen asks for
        DEBUG; ValueError for a name that is not a level)."""
        self.log_levels.set(level_number(name))

    def reset_log_level(self) -> None:
        """Back to the configured level (the last attached UI detached, or the node stops)."""
        self.log_levels.restore()

    @property
    def log_level(self) -> str:
        return self.log_levels.effective()

    def locate_model(self, model_id: str) -> Path | None:
        return self.registry.locate(model_id)

    # ---- models on peers ---------------------------------------------------------------
    def local_models(self) -> list[ModelInfo]:
        """Models this node has loaded, then the ones it could load."""
        loaded = {m.model_id: m for m in (self.engine.loaded() if self.engine else [])}
        name = self.settings.display_name()
        now = time.monotonic()
        out = [
            ModelInfo(
                m.model_id, "local", True, m.size_bytes, m.memory_bytes, (name,), here=True,
                keep_alive_left=self.keep_alive.time_left(m.model_id, now),
            )
            for m in loaded.values()
        ]  # fmt: skip
        if self.engine is not None:
            out += [
                ModelInfo(e.model_id, "local", False, e.size_bytes, here=True)
                for e in self.registry.available()
                if e.model_id not in loaded
            ]
        return out

    def models(self) -> list[ModelInfo]:
        """Every model in the cluster, once per id (local first)."""
        local = self.local_models()
        if self.cluster is None:
            return local
        return self.cluster.merge_models(local)

    def partial_copies(self) -> list[PartialCopy]:
        """The partial copies of models on this node (some weight files, for sharding)."""
        return partial_copies(self.settings.models_path())

    def loaded_model_ids(self) -> list[str]:
        return [m.model_id for m in self.engine.loaded()] if self.engine else []

    def stats(self) -> NodeStats:
        mem = self.engine.memory() if self.engine is not None else memory_status()
        return NodeStats(
            in_flight=self._in_flight,
            queued=self.engine.queued if self.engine else 0,
            tokens_per_second=self.engine.tokens_per_second() if self.engine else 0.0,
            memory_total=mem.total,
            memory_available=mem.available,
            uptime=time.time() - self.started_at,
        )

    def cluster_view(self) -> ClusterView:
        """This node and its peers (GET /v1/cluster, the Peers and Overview screens)."""
        if self.cluster is not None:
            return self.cluster.view()
        return ClusterView(self.self_view(), ())

    def self_view(self) -> SelfView:
        stats = self.stats()
        return SelfView(
            id=self.cluster.node_id if self.cluster is not None else "",
            name=self.settings.display_name(),
            address=f"{self.settings.host}:{self.port}",
            version=self.version,
            mode=self.settings.mode,
            blas=self.blas,
            health="ok",
            vram_total=stats.memory_total,
            vram_free=stats.memory_available,
            loaded_models=tuple(self.loaded_model_ids()),
            requests_in_flight=stats.in_flight,
            tokens_per_second=round(stats.tokens_per_second, 2),
            shards=self.shards.service.views() if self.shards is not None else (),
        )

    # ---- generation --------------------------------------------------------------------
    def route_facts(self, request: GenerationRequest) -> RouteFacts:
        """Everything `routing.decide` needs, gathered once (one registry scan at most)."""
        loaded = self.engine is not None and self.engine.is_loaded(request.model)
        source = None
        loadable = False
        if self.engine is not None and not loaded:
            source = self.registry.locate(request.model)
            loadable = source is not None or self.registry.is_bundled_default(request.model)
        return RouteFacts(
            model=request.model,
            forwarded=request.forwarded,
            loaded_here=loaded,
            loadable_here=loadable,
            source=source,
            peers=self.cluster.peer_facts() if self.cluster is not None else (),
            sharded_here=self.shards is not None and self.shards.service.coordinates(request.model),
        )

    async def _serve(
        self, request: GenerationRequest, route: Route
    ) -> tuple[str, AsyncGenerator[Chunk, None]]:
        """Act on the routing answer: who serves the request, and its chunks."""
        match route:
            case Local():
                assert self.engine is not None
                return "local", self.engine.generate(request)
            case LoadLocally(source=source):
                await self.load_model(request.model, source=source)  # 507 if it does not fit
                assert self.engine is not None
                return "local", self.engine.generate(request)
            case Peer(candidates=candidates):
                assert self.cluster is not None
                name = self.cluster.peer_name(candidates[0])
                return name, self.cluster.proxy(request, candidates)
            case Sharded(coordinator=None):
                assert self.shards is not None
                return "sharded", self.shards.service.generate(request, self._reroute)
            case Sharded(coordinator=coordinator):
                assert self.cluster is not None and coordinator is not None
                name = self.cluster.peer_name(coordinator)
                return f"{name} (sharded)", self.cluster.proxy(request, (coordinator,))
            case PeerUnreachable(peers=peers, retry_after=retry_after):
                raise ModelError.of(errors.peer_unreachable(request.model, peers, retry_after))
            case NotFound():
                raise ModelError.of(errors.model_not_found(request.model))
            case _:
                assert_never(route)

    async def _reroute(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Decide again and serve (a sharded instance failed before the first token)."""
        try:
            _, chunks = await self._serve(request, decide(self.route_facts(request)))
        except ModelError as exc:
            yield exc.to_error()
            return
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    def _refusal(self, request: GenerationRequest) -> Error | None:
        """A forwarded request is checked against this node's own API key: a node's key
        protects its models on every path (the first node relays the 401). A node shutting
        down takes no new work (503, see shutdown.py)."""
        if (closed := self.gate.refusal()) is not None:
            return closed
        key = self.settings.api_key
        if request.forwarded and key and not key_matches(key, request.bearer):
            return errors.peer_key_refused(self.settings.display_name(), given=request.bearer)
        return None

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Serve one request: chunks from the engine or a peer, with stream events published.

        Closing the iterator (client gone) cancels the generation wherever it runs.
        """
        refusal = self._refusal(request)
        if refusal is not None:
            yield refusal
            return
        try:
            route = decide(self.route_facts(request))
            log.debug(
                "request for %s (forwarded: %s) -> %s", request.model, request.forwarded, route
            )
            served_by, chunks = await self._serve(request, route)
        except ModelError as exc:
            yield exc.to_error()
            return
        self._in_flight += 1
        local = served_by == "local"
        if local:  # the model is in use: its idle time starts again when this request ends
            given = request.keep_alive
            keep: float | str | None = "unset" if given is None else None if given < 0 else given
            self.keep_alive.began(request.model, time.monotonic(), keep)
        try:
            async with aclosing(with_stream_events(self.events, request, served_by, chunks)) as out:
                async for chunk in out:
                    yield chunk
        finally:
            self._in_flight -= 1
            if local:
                self.keep_alive.ended(request.model, time.monotonic())
