"""`RemoteNode`: a running node seen through its control routes, in the shape the terminal UI
reads an in-process `Node` (`salut attach`).

The UI subscribes to `events` and calls the same methods either way. Here one server-sent-event
stream (`remote/routes.py`) carries the node's events, republished on a local `EventBus`, and
a snapshot of its views once a second, which `stats()`, `cluster_view()` and the `engine` and
`cluster` stand-ins answer from. Stopping it only closes the stream: the node keeps running.

The node's log records come on the same stream and are logged again here under their own names,
so the Logs screen shows the node's records (API requests included).

What an attached UI cannot do (yet): chat (it would need the node's API key), import a GGUF
file, or change the settings of the running node (Settings writes the file for its next start).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from salut_tui.cluster.control import CONTROL_HEADER, CONTROL_PREFIX, CommandError, call_control
from salut_tui.cluster.remote_models import RemoteLoadResult
from salut_tui.config import Settings
from salut_tui.engine.types import Chunk, Error, GenerationRequest, ModelError
from salut_tui.events import EventBus
from salut_tui.pairing.reasons import as_reason
from salut_tui.pairing.service import PairingError, PairingStatus
from salut_tui.remote.routes import FORWARDED, UI_PREFIX
from salut_tui.remote.wire import (
    WireError,
    cluster_from_json,
    event_from_json,
    model_from_json,
    pairing_from_json,
    stats_from_json,
)
from salut_tui.shard.placement import ShardPlan
from salut_tui.shard.service import Mode, plan_from_summary
from salut_tui.supervisor import Supervisor
from salut_tui.views import ClusterView, ModelInfo, NodeStats

log = logging.getLogger(__name__)


class AttachError(Exception):
    """No node answers there, or it refused the token."""


@dataclass(frozen=True, slots=True)
class RemoteModel:
    """A loaded model as the engine lists it (the fields the screens read)."""

    model_id: str
    memory_bytes: int
    size_bytes: int


class RemoteEngine:
    """The engine's read side, from the last snapshot."""

    def __init__(self, owner: RemoteNode) -> None:
        self._owner = owner

    def loaded(self) -> list[RemoteModel]:
        return [RemoteModel(**m) for m in self._owner.snapshot.get("loaded", [])]

    def is_loaded(self, model_id: str) -> bool:
        return any(m.model_id == model_id for m in self.loaded())


class RemoteCluster:
    """Pairing through the existing control routes (`salut pair` uses the same ones)."""

    def __init__(self, owner: RemoteNode) -> None:
        self._owner = owner

    @property
    def name(self) -> str:
        return self._owner.cluster_view().node.name

    @property
    def node_id(self) -> str:
        return self._owner.cluster_view().node.id

    def pairing_status(self) -> PairingStatus:
        return pairing_from_json(self._owner.snapshot["pairing"])

    def create_pairing_code(self, ttl: float = 300.0) -> PairingStatus:
        # A local round trip of a few ms; the screen calls it from a key press.
        return pairing_from_json(self._owner.control_sync("POST", "/pair/code", {"ttl": ttl}))

    def cancel_pairing(self) -> None:
        self._owner.control_sync("DELETE", "/pair/code")

    async def join(self, address: str, code: str) -> Any:
        body = await self._owner.control("POST", "/pair/join", {"address": address, "code": code})
        return _Joined(body["id"], body["name"], body["address"])

    async def unpair(self, node_id: str) -> Any:
        body = await self._owner.control("DELETE", f"/peers/{node_id}")
        return _Joined(body["id"], body["name"], "")


@dataclass(frozen=True, slots=True)
class _Joined:
    node_id: str
    name: str
    address: str


class _NoCountdown:
    """Idle-unload countdowns are not sent to an attached UI (yet): none shown."""

    def time_left(self, model_id: str, now: float) -> float | None:
        return None


class RemoteNode:
    """Stands in for `Node` in the UI; `start()` attaches, `stop()` detaches."""

    def __init__(self, host: str, port: int, token: str, *, data_dir: Path | None = None) -> None:
        self.host, self.remote_port, self._token = host, port, token
        self.data_dir = data_dir
        self.events = EventBus()
        self.snapshot: dict[str, Any] = {}
        self.settings = Settings()
        self.config_path: Path | None = None
        self.engine = RemoteEngine(self)
        self.cluster: RemoteCluster | None = None
        self.connected = False
        self._session: aiohttp.ClientSession | None = None
        self._tasks = Supervisor("attach")
        self._first = asyncio.Event()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.remote_port}{CONTROL_PREFIX}"

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self, *, preload: list[str] | None = None) -> None:
        """Open the event stream and wait for the first snapshot (AttachError if none)."""
        self._session = aiohttp.ClientSession(headers={CONTROL_HEADER: self._token})
        self._tasks.spawn(self._follow(), name="event stream")
        try:
            await asyncio.wait_for(self._first.wait(), 10)
        except TimeoutError:
            await self.stop()
            raise AttachError(f"no node answered at {self.host}:{self.remote_port}") from None

    async def stop(self) -> None:
        """Detach; the node keeps running."""
        await self._tasks.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.connected = False

    async def _follow(self) -> None:
        assert self._session is not None
        url = f"{self.base}{UI_PREFIX.removeprefix(CONTROL_PREFIX)}/events"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
        async with self._session.get(url, timeout=timeout) as response:
            if response.status != 200:
                raise AttachError(f"the node refused to attach: HTTP {response.status}")
            self.connected = True
            kind = ""
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    self._receive(kind, json.loads(line.removeprefix("data: ")))
        self.connected = False

    def _receive(self, kind: str, data: dict[str, Any]) -> None:
        try:
            if kind == "snapshot":
                self._apply_snapshot(data)
            elif kind == "node":
                self.events.publish(event_from_json(data))
            elif kind == "log":
                self._log_again(data)
        except (WireError, KeyError, ValueError) as exc:
            log.warning("attach: ignored a message the node sent: %s", exc)

    @staticmethod
    def _log_again(data: dict[str, Any]) -> None:
        """The node's record, handed to this process's logger of the same name (so the Logs
        screen shows it with its source); `handle` skips the level check: the node did it."""
        record = logging.makeLogRecord(
            {
                "name": data["name"],
                "levelno": data["levelno"],
                "levelname": data["levelname"],
                "msg": data["message"],
                "created": data["created"],
                FORWARDED: True,
            }
        )
        logging.getLogger(record.name).handle(record)

    def _apply_snapshot(self, data: dict[str, Any]) -> None:
        self.snapshot = data
        if not self._first.is_set():
            self.settings = Settings.model_validate(data["settings"])
            path = data.get("config_path")
            self.config_path = Path(path) if path else None
            self.cluster = RemoteCluster(self) if data.get("has_cluster") else None
            self._first.set()

    # ---- what the screens read -----------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self.snapshot.get("port", self.remote_port))

    @property
    def blas(self) -> str:
        return str(self.snapshot.get("blas", "?"))

    @property
    def version(self) -> str:
        return str(self.snapshot.get("version", "?"))

    def stats(self) -> NodeStats:
        return stats_from_json(self.snapshot["stats"])

    def cluster_view(self) -> ClusterView:
        return cluster_from_json(self.snapshot["cluster"])

    def loaded_model_ids(self) -> list[str]:
        return [m.model_id for m in self.engine.loaded()]

    def models(self) -> list[ModelInfo]:
        rows = self.control_sync("GET", "/ui/models")
        return [model_from_json(row) for row in rows]

    def local_models(self) -> list[ModelInfo]:
        return [m for m in self.models() if m.owned_by == "local"]

    # ---- what the screens call -----------------------------------------------------------
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

    @property
    def keep_alive(self) -> _NoCountdown:
        return _NoCountdown()

    async def load_on(
        self,
        peer: str | None,
        model_id: str,
        *,
        keep_alive: str | int | float | None = None,
        force: bool = False,
        on_progress: Callable[[float, str], None] = lambda _f, _s: None,
    ) -> RemoteLoadResult:
        """On the attached node itself only (a peer's load needs the node's own UI for now)."""
        if peer not in (None, "", "local", self.settings.display_name()):
            return RemoteLoadResult(False, "not from an attached UI yet", "attached", 409)
        try:
            await self.load_model(model_id, force=force)
        except ModelError as exc:
            return RemoteLoadResult(False, exc.message, "remote", exc.status)
        return RemoteLoadResult(True, f"loaded {model_id}")

    async def unload_on(self, peer: str | None, model_id: str) -> RemoteLoadResult:
        if peer not in (None, "", "local", self.settings.display_name()):
            return RemoteLoadResult(False, "not from an attached UI yet", "attached", 409)
        try:
            await self.unload_model(model_id)
        except ModelError as exc:
            return RemoteLoadResult(False, exc.message, "remote", exc.status)
        return RemoteLoadResult(True, f"unloaded {model_id}")

    def pull_model(self, model_id: str, peer: str | None = None) -> str:
        raise ModelError("pulling a model needs the node's own UI or `salut pull`", status=409)

    async def import_gguf(
        self,
        gguf_path: Path,
        model_id: str,
        *,
        dtype: str = "float32",
        progress: Callable[[float, str], None] | None = None,
    ) -> Path:
        raise ModelError(
            "importing a GGUF file needs the node's own UI: run `salut import` on that machine",
            status=409,
            code="attached",
        )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        yield Error.of(
            409, "chat from an attached UI is not available yet: use the node's API",
            code="attached",
        )  # fmt: skip

    async def control(self, method: str, path: str, body: dict | None = None) -> Any:
        """A control request on the attach session; errors as ModelError/PairingError."""
        if self._session is None:
            raise ModelError("not attached", status=503, code="detached")
        async with self._session.request(method, f"{self.base}{path}", json=body) as response:
            data = await response.json()
            if response.status >= 400:
                message = data.get("error", {}).get("message", f"HTTP {response.status}")
                if path.startswith(("/pair", "/peers")):
                    raise PairingError(message, as_reason(data.get("error", {}).get("code")))
                raise ModelError(message, status=response.status, code="remote")
            return data

    def control_sync(self, method: str, path: str, body: dict | None = None) -> Any:
        """The same, blocking (urllib), for the few calls screens make from a key press."""
        try:
            return call_control(
                None, method, path, body,
                host=self.host, port=self.remote_port, token=self._token, timeout=10,
            )  # fmt: skip
        except CommandError as exc:
            raise PairingError(str(exc), "failed") from None
