"""`RemoteNode`: a running node seen through its control routes, in the shape the terminal UI
reads an in-process `Node` (`salut attach`).

The UI subscribes to `events` and calls the same methods either way. Here one server-sent-event
stream (`remote/routes.py`) carries the node's events, republished on a local `EventBus`, and
a snapshot of its views once a second, which `stats()`, `cluster_view()` and the `engine` and
`cluster` stand-ins answer from. Stopping it only closes the stream: the node keeps running.

The node's log records come on the same stream and are logged again here under their own names,
so the Logs screen shows the node's records (API requests included).

What the screens ask the node to do goes over the control routes too (`client_actions.py`):
chat, imports, copies, loads here or on a peer, and settings, which the node saves into its own
config file and applies live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from salut_tui.cluster.control import CONTROL_HEADER, CONTROL_PREFIX, CommandError, call_control
from salut_tui.config import Settings
from salut_tui.engine.types import ModelError
from salut_tui.events import EventBus, StreamFinished, TransferChanged
from salut_tui.pairing.reasons import as_reason
from salut_tui.pairing.service import PairingError
from salut_tui.remote.client_actions import RemoteActions
from salut_tui.remote.routes import FORWARDED
from salut_tui.remote.stand_ins import RemoteCluster, RemoteEngine, RemoteKeepAlive
from salut_tui.remote.wire import (
    UI_PREFIX,
    WIRE_VERSION,
    WireError,
    cluster_from_json,
    event_from_json,
    model_from_json,
    stats_from_json,
    transfer_from_json,
)
from salut_tui.supervisor import Supervisor
from salut_tui.views import ClusterView, ModelInfo, NodeStats

log = logging.getLogger(__name__)


class AttachError(Exception):
    """No node answers there, or it refused the token."""


class RemoteNode(RemoteActions):
    """Stands in for `Node` in the UI; `start()` attaches, `stop()` detaches."""

    attached = True  # quitting the UI leaves the node running

    def __init__(self, host: str, port: int, token: str, *, data_dir: Path | None = None) -> None:
        self.host, self.remote_port, self._token = host, port, token
        self.data_dir = data_dir
        self.events = EventBus()
        self.snapshot: dict[str, Any] = {}
        self.settings = Settings()
        self.config_path: Path | None = None
        self.engine = RemoteEngine(self)
        self.keep_alive = RemoteKeepAlive()
        self.cluster: RemoteCluster | None = None
        self.connected = False
        self._session: aiohttp.ClientSession | None = None
        self._tasks = Supervisor("attach")
        self._first = asyncio.Event()
        self._refused: str | None = None  # why the node's first snapshot cannot be read
        # Requests of this UI's chat whose StreamFinished event has come (see below).
        self._finished: dict[str, asyncio.Event] = {}

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
        if self._refused is not None:
            await self.stop()
            raise AttachError(self._refused)

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
                event = event_from_json(data)
                self.events.publish(event)
                if isinstance(event, StreamFinished) and event.request_id in self._finished:
                    self._finished[event.request_id].set()
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
        if not self._first.is_set() and data.get("wire") != WIRE_VERSION:
            self._refused = (
                f"the node speaks attach wire version {data.get('wire', 1)}, this UI "
                f"{WIRE_VERSION}: attach with the `salut` of the node's install"
            )
            self._first.set()
            return
        self.snapshot = data
        self.keep_alive.update(data.get("keep_alive", {}), time.monotonic())
        if not self._first.is_set():
            self.settings = Settings.model_validate(data["settings"])
            path = data.get("config_path")
            self.config_path = Path(path) if path else None
            self.cluster = RemoteCluster(self) if data.get("has_cluster") else None
            self._first.set()
            # Copies already running on the node: shown as if their events had come here.
            for transfer in data.get("transfers", []):
                self.events.publish(TransferChanged(transfer_from_json(transfer)))

    @contextlib.contextmanager
    def following(self, request_id: str) -> Iterator[None]:
        """While this UI's chat request runs, note when its StreamFinished event comes."""
        self._finished[request_id] = asyncio.Event()
        try:
            yield
        finally:
            del self._finished[request_id]

    async def stream_events_caught_up(self, request_id: str, timeout: float = 2.0) -> None:
        """Wait (a little) until the event stream has brought the end of this request: the chat's
        chunks and the node's events travel on two connections, and the screen labels an answer
        from the events once its last chunk is in, as it does in-process."""
        with contextlib.suppress(TimeoutError, KeyError):
            await asyncio.wait_for(self._finished[request_id].wait(), timeout)

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

    # ---- control requests ------------------------------------------------------------------
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
