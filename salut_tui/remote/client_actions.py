"""What an attached UI asks the node to do, over the control routes: load and unload (here or
on a peer, with progress), sharded models, copies from a peer, GGUF import with progress, chat
(streamed, cancellable) and settings. A mixin of `RemoteNode`, kept apart so that client.py
stays about attaching and reading.

Each answers in the shape the in-process `Node` does (the `UINode` seam), so a screen cannot
tell which it drives: refusals are ModelError / RemoteLoadResult / Error chunks with the node's
own message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from salut_tui.cluster.remote_models import RemoteLoadResult
from salut_tui.cluster.wire import chunk_from_bytes, error_from_json, request_to_json
from salut_tui.config import ConfigError
from salut_tui.engine.types import Chunk, Error, Finish, GenerationRequest, ModelError, Token
from salut_tui.pairing.service import PairingError
from salut_tui.settings_change import SavedSettings
from salut_tui.shard.placement import ShardPlan
from salut_tui.shard.service import Mode, plan_from_summary

if TYPE_CHECKING:  # what RemoteNode gives this mixin
    from salut_tui.config import Settings
    from salut_tui.supervisor import Supervisor

log = logging.getLogger("salut_tui.remote.client")

NO_READ_LIMIT = aiohttp.ClientTimeout(total=None, sock_read=None)  # a chat or a load may idle


class RemoteActions:
    if TYPE_CHECKING:
        settings: Settings
        config_path: Path | None
        snapshot: dict[str, Any]
        _session: aiohttp.ClientSession | None
        _tasks: Supervisor

        @property
        def base(self) -> str: ...

        async def control(self, method: str, path: str, body: dict | None = None) -> Any: ...

        async def stream_events_caught_up(self, request_id: str) -> None: ...

        def following(self, request_id: str) -> AbstractContextManager[None]: ...

        def control_sync(self, method: str, path: str, body: dict | None = None) -> Any: ...

    # ---- this node's models --------------------------------------------------------------
    async def load_model(self, model_id: str, *, force: bool = False, source: Any = None) -> Any:
        return await self.control("POST", "/ui/models/load", {"model": model_id, "force": force})

    async def unload_model(self, model_id: str) -> None:
        await self.control("POST", "/ui/models/unload", {"model": model_id})

    def shard_plan(self, model_id: str, nodes: list[str] | None = None) -> ShardPlan:
        try:
            body = self.control_sync("POST", "/shard/plan", {"model": model_id, "nodes": nodes})
        except PairingError as exc:  # control_sync's error type; a refused plan is a model's
            raise ModelError(str(exc), code="remote") from None
        return plan_from_summary(body)

    async def load_sharded(
        self,
        model_id: str,
        nodes: list[str] | None = None,
        mode: Mode = "pipeline",
        *,
        copy: bool = False,
    ) -> ShardPlan:
        body = {"model": model_id, "shard": True, "nodes": nodes, "mode": mode, "copy": copy}
        return plan_from_summary((await self.control("POST", "/load", body))["plan"])

    async def unload_sharded(self, model_id: str) -> list[str]:
        return list((await self.control("POST", "/unload", {"model": model_id}))["instances"])

    # ---- here or on a peer ---------------------------------------------------------------
    def _is_me(self, peer: str | None) -> bool:
        return peer in (None, "", "local", self.settings.display_name())

    async def load_on(
        self,
        peer: str | None,
        model_id: str,
        *,
        keep_alive: str | int | float | None = None,
        force: bool = False,
        on_progress: Callable[[float, str], None] = lambda _f, _s: None,
    ) -> RemoteLoadResult:
        """Here, or on a paired peer (the node asks it over the link, as `salut load --on`);
        the peer's progress comes line by line."""
        if self._is_me(peer):
            try:
                await self.load_model(model_id, force=force)
            except ModelError as exc:
                return RemoteLoadResult(False, exc.message, "remote", exc.status)
            return RemoteLoadResult(True, f"loaded {model_id}")
        if not self.snapshot.get("has_cluster"):
            return RemoteLoadResult(False, "this node runs solo: it has no peers", "solo", 409)
        body = {"model": model_id, "on": peer, "keep_alive": keep_alive, "force": force}
        last: dict[str, Any] = {}
        async for line in self._ndjson("/models/load", body):
            if "progress" in line:
                on_progress(float(line["progress"]), str(line.get("stage", "")))
            else:
                last = line
        if "ok" not in last:
            return RemoteLoadResult(False, "the node did not answer the load", "remote", 502)
        return RemoteLoadResult(**last)

    async def unload_on(self, peer: str | None, model_id: str) -> RemoteLoadResult:
        if self._is_me(peer):
            try:
                await self.unload_model(model_id)
            except ModelError as exc:
                return RemoteLoadResult(False, exc.message, "remote", exc.status)
            return RemoteLoadResult(True, f"unloaded {model_id}")
        if not self.snapshot.get("has_cluster"):
            return RemoteLoadResult(False, "this node runs solo: it has no peers", "solo", 409)
        return RemoteLoadResult(
            **await self.control("POST", "/models/unload", {"model": model_id, "on": peer})
        )

    def pull_model(self, model_id: str, peer: str | None = None) -> str:
        """Start a copy on the node. Called from a key press, it must not block the loop (a
        node in the same process could not answer): the request goes in the background and
        the copy's id and progress arrive as TransferChanged events, so this returns ""."""
        self._tasks.spawn(self._pull(model_id, peer), name=f"pull {model_id}")
        return ""

    async def _pull(self, model_id: str, peer: str | None) -> None:
        try:
            await self.control("POST", "/ui/models/pull", {"model": model_id, "from": peer})
        except ModelError as exc:
            log.warning("the node did not start copying %s: %s", model_id, exc.message)

    async def import_gguf(
        self,
        gguf_path: Path,
        model_id: str,
        *,
        dtype: str = "float32",
        progress: Callable[[float, str], None] | None = None,
    ) -> Path:
        """The node converts the file: `gguf_path` is read there (attach is local: the same
        machine, so an absolute path names the same file)."""
        body = {"path": str(gguf_path.expanduser().absolute()), "model": model_id, "dtype": dtype}
        last: dict[str, Any] = {}
        async for line in self._ndjson("/ui/models/import", body):
            if "progress" in line:
                if progress is not None:
                    progress(float(line["progress"]), str(line.get("stage", "")))
            else:
                last = line
        if "path" in last:
            return Path(last["path"])
        error = last.get("error") or {"message": "the node did not finish the import"}
        raise ModelError(str(error.get("message")), status=400, code="import_failed")

    # ---- chat ----------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """The node serves it through its own `generate` (routing, stream events, keep-alive);
        chunks come one per line as they come. Closing this generator closes the stream, which
        cancels the generation on the node."""
        if self._session is None:
            yield Error.of(503, "not attached to a node", code="detached")
            return
        url = f"{self.base}/ui/chat"
        body = request_to_json(request)
        try:
            with self.following(request.request_id):
                async with self._session.post(url, json=body, timeout=NO_READ_LIMIT) as response:
                    try:
                        async for chunk in self._chunks(request, response):
                            yield chunk
                    finally:
                        response.close()  # unfinished: drop the connection, the node stops
        except (aiohttp.ClientError, ValueError) as exc:
            yield Error.of(502, f"lost the node during the answer: {exc}", code="detached")

    async def _chunks(
        self, request: GenerationRequest, response: aiohttp.ClientResponse
    ) -> AsyncGenerator[Chunk, None]:
        if response.status != 200:
            error = (await response.json(content_type=None)).get("error", {})
            yield error_from_json({**error, "status": response.status})
            return
        tokens = 0
        async for line in response.content:
            if line.strip():
                chunk = chunk_from_bytes(line)
                # Its events first, as in-process: a request that ran has a StreamFinished
                # coming (one refused before it started has none: no wait).
                if isinstance(chunk, Finish) or (isinstance(chunk, Error) and tokens):
                    await self.stream_events_caught_up(request.request_id)
                tokens += isinstance(chunk, Token)
                yield chunk

    # ---- settings ------------------------------------------------------------------------
    async def change_settings(self, changes: Mapping[str, Any]) -> SavedSettings:
        """Saved into the node's own config file, and applied live there."""
        try:
            body = await self.control("POST", "/ui/settings", {"changes": dict(changes)})
        except ModelError as exc:  # control's error type: the node's reason, in words
            raise ConfigError(exc.message) from None
        saved = SavedSettings.from_json(body)
        for key in saved.live:  # what the screens read here follows the node
            setattr(self.settings, key, getattr(saved.settings, key))
        self.config_path = saved.path
        return saved

    # ---- log level ---------------------------------------------------------------------
    def set_log_level(self, name: str) -> None:
        """The node's loggers at `name` until this UI detaches (the node puts its configured
        level back then). From a key press: the request goes in the background."""
        self._tasks.spawn(self._set_log_level(name), name=f"log level {name}")

    async def _set_log_level(self, name: str) -> None:
        try:
            await self.control("POST", "/ui/log-level", {"level": name})
        except ModelError as exc:
            log.warning("the node did not take the log level %s: %s", name, exc.message)

    # ---- helpers -------------------------------------------------------------------------
    async def _ndjson(self, path: str, body: dict) -> AsyncGenerator[dict[str, Any], None]:
        """The lines of a control route's NDJSON answer; ModelError for a refusal."""
        if self._session is None:
            raise ModelError("not attached to a node", status=503, code="detached")
        async with self._session.post(
            f"{self.base}{path}", json=body, timeout=NO_READ_LIMIT
        ) as response:
            if response.status >= 400:
                data = await response.json(content_type=None)
                message = data.get("error", {}).get("message", f"HTTP {response.status}")
                raise ModelError(message, status=response.status, code="remote")
            async for raw in response.content:
                if raw.strip():
                    yield json.loads(raw)
