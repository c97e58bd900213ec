"""The node's model actions that reach beyond one engine: idle unload (keep-alive), copies from
peers and Hub downloads (as transfers the UI and the control routes follow), and loading or
unloading on this node or on a paired peer. A mixin of `Node` (the composition root), kept apart
so that node.py stays about wiring and generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from salut_tui.cluster.model_routes import local_load_progress, local_result
from salut_tui.cluster.pull import PullProgress
from salut_tui.cluster.remote_models import RemoteLoadResult
from salut_tui.engine.types import ModelError
from salut_tui.events import Event, ModelLoaded, ModelUnloaded
from salut_tui.transfer.manifest import TransferError

if TYPE_CHECKING:  # the attributes Node gives this mixin
    from salut_tui.cluster.cluster import Cluster
    from salut_tui.config import Settings
    from salut_tui.engine.engine import Engine
    from salut_tui.engine.loader import LoadedModelInfo
    from salut_tui.events import EventBus
    from salut_tui.keepalive import KeepAlive
    from salut_tui.supervisor import Supervisor
    from salut_tui.transfers import Transfers

log = logging.getLogger("salut_tui.node")

IDLE_CHECK = 0.5  # seconds between looks for models idle past their keep-alive


class ModelActions:
    if TYPE_CHECKING:
        settings: Settings
        engine: Engine | None
        cluster: Cluster | None
        events: EventBus
        keep_alive: KeepAlive
        transfers: Transfers
        _tasks: Supervisor

        async def load_model(
            self, model_id: str, *, force: bool = False, source: Path | None = None,
            keep_alive: str | int | float | None = None,
        ) -> LoadedModelInfo: ...  # fmt: skip

        async def unload_model(self, model_id: str) -> None: ...

    def _on_model_event(self, event: Event) -> None:
        if isinstance(event, ModelLoaded):
            self.keep_alive.loaded(event.model_id, time.monotonic())
        elif isinstance(event, ModelUnloaded):
            self.keep_alive.unloaded(event.model_id)

    async def _unload_idle(self) -> None:
        """Unload every model nobody used for its keep-alive; the next request loads it again."""
        while True:
            await asyncio.sleep(IDLE_CHECK)
            for model_id in self.keep_alive.expired(time.monotonic()):
                if self.engine is not None and self.engine.is_loaded(model_id):
                    log.info("unloading %s: idle for its keep-alive", model_id)
                    with contextlib.suppress(ModelError):  # unloaded by hand meanwhile
                        # Shielded: a stop while the thread frees it must not orphan the reply.
                        await asyncio.shield(self.engine.unload(model_id))
                self.keep_alive.unloaded(model_id)

    def pull_model(self, model_id: str, peer: str | None = None) -> str:
        """Start copying a model from a paired peer (`peer`: id, prefix or name; None: any that
        has it); returns the transfer id to follow in `self.transfers`."""
        running = self.transfers.running("pull", model_id)
        if running is not None:
            return running.id
        transfer_id = self.transfers.start("pull", model_id, peer or "")
        self._tasks.spawn(self._pull(transfer_id, model_id, peer), name=f"pull {model_id}")
        return transfer_id

    def download_model(
        self, model_id: str, *, revision: str | None = None, endpoint: str | None = None
    ) -> str:
        """Start downloading a model from the Hub into the HF cache (the UI shows it)."""
        running = self.transfers.running("download", model_id)
        if running is not None:
            return running.id
        transfer_id = self.transfers.start("download", model_id, endpoint or "the Hub")
        self._tasks.spawn(
            self._download(transfer_id, model_id, revision, endpoint), name=f"download {model_id}"
        )
        return transfer_id

    async def _download(
        self, transfer_id: str, model_id: str, revision: str | None, endpoint: str | None
    ) -> None:
        from salut_tui.engine.hub import DownloadError, download_model
        from salut_tui.engine.registry import hf_cache_dir

        loop = asyncio.get_running_loop()

        def on_bytes(done: int, total: int, received: int) -> None:  # the hub client's thread
            loop.call_soon_threadsafe(
                self.transfers.update, transfer_id, done, total, received, "downloading"
            )

        try:
            path = await asyncio.to_thread(
                download_model, model_id, revision=revision, endpoint=endpoint,
                cache_dir=hf_cache_dir(), on_bytes=on_bytes,
            )  # fmt: skip
        except DownloadError as exc:
            self.transfers.fail(transfer_id, str(exc))
            return
        await asyncio.sleep(0)  # let the last byte reports land before the end
        self.transfers.finish(transfer_id, str(path))

    async def _pull(self, transfer_id: str, model_id: str, peer: str | None) -> None:
        if self.cluster is None:
            self.transfers.fail(transfer_id, "this node runs solo: it has no peers to copy from")
            return

        def report(p: PullProgress) -> None:
            self.transfers.update(transfer_id, p.done, p.total, p.received, p.stage)

        try:
            path = await self.cluster.pull(model_id, peer, report)
        except TransferError as exc:
            log.warning("pull of %s failed: %s", model_id, exc)
            self.transfers.fail(transfer_id, str(exc))
            return
        except OSError as exc:
            self.transfers.fail(transfer_id, f"cannot write the copy: {exc.strerror or exc}")
            return
        log.info("pulled %s into %s", model_id, path)
        self.transfers.finish(transfer_id, str(path))

    def _is_me(self, peer: str | None) -> bool:
        if peer is None or peer in ("", "local", self.settings.display_name()):
            return True
        return self.cluster is not None and self.cluster.node_id.startswith(peer)

    async def load_on(
        self,
        peer: str | None,
        model_id: str,
        *,
        keep_alive: str | int | float | None = None,
        force: bool = False,
        on_progress: Callable[[float, str], None] = lambda _f, _s: None,
    ) -> RemoteLoadResult:
        """Load a model here (`peer` None or this node) or on a paired peer, which runs its own
        memory check; the answer is in words either way."""
        if not self._is_me(peer):
            if self.cluster is None:
                return RemoteLoadResult(False, "this node runs solo: it has no peers", "solo", 409)
            return await self.cluster.load_on(
                str(peer), model_id, keep_alive=keep_alive, force=force, on_progress=on_progress
            )
        unsubscribe = local_load_progress(self.events, model_id, on_progress)
        try:
            info = await self.load_model(model_id, force=force, keep_alive=keep_alive)
        except ModelError as exc:
            return local_result(exc)
        finally:
            unsubscribe()
        return RemoteLoadResult(
            True, f"loaded {model_id} on {self.settings.display_name()} "
            f"({info.memory_bytes / 1e6:.1f} MB)"
        )  # fmt: skip

    async def unload_on(self, peer: str | None, model_id: str) -> RemoteLoadResult:
        if not self._is_me(peer):
            if self.cluster is None:
                return RemoteLoadResult(False, "this node runs solo: it has no peers", "solo", 409)
            return await self.cluster.unload_on(str(peer), model_id)
        try:
            await self.unload_model(model_id)
        except ModelError as exc:
            return local_result(exc)
        return RemoteLoadResult(True, f"unloaded {model_id} on {self.settings.display_name()}")
