"""The composition root: one Node wires the engine, the API server, the cluster and pairing.

Headless (`salut serve`) and the terminal UI start the same Node; the UI only subscribes to
`node.events` and calls the public methods below. Every request path (API, UI chat, a peer's
proxied request) goes through `Node.generate`, which picks who serves the request and publishes
the stream events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from salut_tui import __version__
from salut_tui.blas import detect_active_blas
from salut_tui.config import Settings
from salut_tui.engine.engine import Engine
from salut_tui.engine.memory import memory_status
from salut_tui.engine.registry import ModelRegistry
from salut_tui.engine.types import Chunk, Error, Finish, GenerationRequest, ModelError, Token
from salut_tui.events import EventBus, StreamFinished, StreamStarted, StreamTokensReceived

if TYPE_CHECKING:
    from salut_tui.cluster.cluster import Cluster  # cluster plug-in

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model as /v1/models and the UI show it."""

    id: str
    owned_by: str  # "local" or a peer's name
    loaded: bool
    size_bytes: int | None = None
    memory_bytes: int | None = None
    nodes: tuple[str, ...] = ()  # names of the nodes that hold it loaded


@dataclass(slots=True)
class NodeStats:
    in_flight: int
    queued: int
    tokens_per_second: float
    memory_total: int
    memory_available: int
    uptime: float


class Node:
    def __init__(self, settings: Settings, *, config_path: Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.events = EventBus()
        self.registry = ModelRegistry(settings)
        self.engine: Engine | None = (
            None if settings.mode == "client-only" else Engine(settings, self.registry, self.events)
        )
        # ---- cluster plug-in (issue 4): identity, trust, discovery, peer links, proxying ----
        self.cluster: Cluster | None = None
        if settings.mode != "solo":
            from salut_tui.cluster.cluster import Cluster

            self.cluster = Cluster(self)
        # ---- end cluster plug-in ----
        self.started_at = time.time()
        self.version = __version__
        self.blas = detect_active_blas()  # shown in logs, the UI and /v1/cluster
        self.port: int = settings.port
        self._runner: web.AppRunner | None = None
        self._in_flight = 0  # requests in Node.generate: local and proxied alike
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self, *, preload: list[str] | None = None) -> None:
        """Start the engine thread and the API server; preload models in the background."""
        from salut_tui.api.app import create_app

        self.started_at = time.time()
        if self.engine is not None:
            await self.engine.start()
        app = create_app(self)
        if self.cluster is not None:  # cluster plug-in: peer routes beside /v1
            self.cluster.install(app)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses  # the port the OS picked when settings.port is 0
        self.port = addresses[0][1] if addresses else self.settings.port
        if self.cluster is not None:  # cluster plug-in: needs the bound port to announce
            await self.cluster.start()
        log.info(
            "Salut %s serving the API on http://%s:%d/v1",
            __version__,
            self.settings.host,
            self.port,
        )
        log.info("BLAS in use: %s", self.blas)
        for model_id in preload if preload is not None else self.settings.preload:
            self._spawn(self._preload(model_id))

    async def stop(self) -> None:
        """End in-flight streams with a proper finish, stop the server, then the engine."""
        if self._stopping:
            return
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        if self.engine is not None:
            await self.engine.stop()  # streams get their Finish before the server goes away
        if self.cluster is not None:  # cluster plug-in: close links so their handlers return
            await self.cluster.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("node stopped")

    async def _preload(self, model_id: str) -> None:
        try:
            await self.load_model(model_id)
        except ModelError as exc:
            log.error("could not preload %s: %s", model_id, exc)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- models ------------------------------------------------------------------------
    async def load_model(self, model_id: str, *, force: bool = False):
        if self.engine is None:
            raise ModelError(
                "this node runs in client-only mode and loads no models",
                status=409,
                code="client_only",
            )
        return await self.engine.load(model_id, force=force)

    async def unload_model(self, model_id: str) -> None:
        if self.engine is None:
            raise ModelError(
                f"model '{model_id}' is not loaded", status=404, code="model_not_found"
            )
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
        from salut_tui.engine.gguf_import import import_gguf

        out = self.settings.models_path().joinpath(*model_id.split("/", 1))

        def convert() -> Path:
            return import_gguf(gguf_path, out, model_id=model_id, dtype=dtype, progress=progress)

        if self.engine is not None:
            return await self.engine.run_on_mlx_thread(convert)
        return await asyncio.to_thread(convert)

    def local_models(self) -> list[ModelInfo]:
        """Models this node has loaded, then the ones it could load."""
        loaded = {m.model_id: m for m in (self.engine.loaded() if self.engine else [])}
        name = self.settings.display_name()
        out = [
            ModelInfo(m.model_id, "local", True, m.size_bytes, m.memory_bytes, (name,))
            for m in loaded.values()
        ]
        if self.engine is not None:
            out += [
                ModelInfo(e.model_id, "local", False, e.size_bytes)
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

    def stats(self) -> NodeStats:
        mem = memory_status()
        return NodeStats(
            in_flight=self._in_flight,
            queued=self.engine.queued if self.engine else 0,
            tokens_per_second=self.engine.tokens_per_second() if self.engine else 0.0,
            memory_total=mem.total,
            memory_available=mem.available,
            uptime=time.time() - self.started_at,
        )

    def cluster_info(self) -> dict:
        """The body of GET /v1/cluster."""
        if self.cluster is not None:
            return self.cluster.info()
        return {"object": "cluster", "node": self.self_info(), "peers": []}

    def self_info(self) -> dict:
        stats = self.stats()
        return {
            "id": "",
            "name": self.settings.display_name(),
            "address": f"{self.settings.host}:{self.port}",
            "version": self.version,
            "mode": self.settings.mode,
            "blas": self.blas,
            "health": "ok",
            "vram_total": stats.memory_total,
            "vram_free": stats.memory_available,
            "loaded_models": [m.model_id for m in (self.engine.loaded() if self.engine else [])],
            "requests_in_flight": stats.in_flight,
            "tokens_per_second": round(stats.tokens_per_second, 2),
        }

    # ---- generation --------------------------------------------------------------------
    def can_serve_locally(self, model_id: str) -> bool:
        """This node has the model loaded, or could load it (the routing prefers peers that
        already hold a model over loading it here)."""
        if self.engine is None:
            return False
        if self.engine.is_loaded(model_id):
            return True
        return self.registry.has(model_id)

    async def _route(self, request: GenerationRequest) -> tuple[str, AsyncIterator[Chunk]]:
        """Pick who serves the request: this node's engine, else a peer that holds the model."""
        if self.engine is None and self.cluster is None:
            raise ModelError(
                "this node runs in client-only mode without a cluster: nothing can serve requests",
                status=503,
                code="no_engine",
                type="server_error",
            )
        if self.engine is not None and self.engine.is_loaded(request.model):
            return "local", self.engine.generate(request)
        if self.cluster is not None:
            routed = self.cluster.route(request)
            if routed is not None:
                return routed
        if self.can_serve_locally(request.model):
            # Available here but not loaded: load on demand (refused if it does not fit).
            await self.load_model(request.model)
            return "local", self.engine.generate(request)  # type: ignore[union-attr]
        raise ModelError(
            f"The model '{request.model}' does not exist or is not available on this cluster",
            status=404,
            code="model_not_found",
            param="model",
        )

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Serve one request: chunks from the engine or a peer, with stream events published.

        Closing the iterator (client gone) cancels the generation wherever it runs.
        """
        try:
            served_by, chunks = await self._route(request)
        except ModelError as exc:
            yield exc.to_error()
            return
        started = time.perf_counter()
        first_token_at: float | None = None
        completion_tokens = 0
        self._in_flight += 1
        self.events.publish(
            StreamStarted(
                request.request_id,
                request.model,
                request.client,
                _prompt_preview(request),
                time.time(),
                served_by,
            )
        )
        finish: Finish | Error | None = None
        try:
            async for chunk in chunks:
                if isinstance(chunk, Token):
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                    completion_tokens += 1
                    self.events.publish(
                        StreamTokensReceived(request.request_id, chunk.text, completion_tokens)
                    )
                else:
                    finish = chunk
                yield chunk
        finally:
            await _aclose(chunks)
            self._in_flight -= 1
            elapsed = time.perf_counter() - started
            ttft = None if first_token_at is None else first_token_at - started
            decode_time = None if first_token_at is None else time.perf_counter() - first_token_at
            tps = completion_tokens / decode_time if decode_time and completion_tokens > 1 else None
            if isinstance(finish, Finish):
                reason, prompt_tokens, error = finish.reason, finish.usage.prompt_tokens, None
            elif isinstance(finish, Error):
                reason, prompt_tokens, error = "error", 0, finish.message
            else:
                reason, prompt_tokens, error = "cancelled", 0, None
            log.debug("request %s done in %.2fs (%s)", request.request_id, elapsed, reason)
            self.events.publish(
                StreamFinished(
                    request.request_id, reason, prompt_tokens, completion_tokens, ttft, tps, error
                )
            )


def _prompt_preview(request: GenerationRequest, limit: int = 120) -> str:
    if request.messages:
        text = str(request.messages[-1].get("content") or "")
    else:
        text = request.prompt or ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _aclose(iterator: AsyncIterator[Chunk]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
