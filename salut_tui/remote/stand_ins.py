"""The parts of a node the screens read as objects (`node.engine`, `node.cluster`,
`node.keep_alive`), answered for an attached UI from the last snapshot the node sent and, for
pairing, through the existing control routes (`salut pair` uses the same ones)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from salut_tui.pairing.service import PairingStatus
from salut_tui.remote.wire import pairing_from_json

if TYPE_CHECKING:
    from salut_tui.remote.client import RemoteNode


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


class RemoteKeepAlive:
    """Idle-unload countdowns: the seconds left the node sent with its last snapshot, counted
    down from the moment it arrived (clocks of two processes are never compared)."""

    def __init__(self) -> None:
        self._left: dict[str, float | None] = {}
        self._at = time.monotonic()

    def update(self, left: dict[str, Any], now: float) -> None:
        self._left = {k: float(v) if v is not None else None for k, v in left.items()}
        self._at = now

    def time_left(self, model_id: str, now: float) -> float | None:
        left = self._left.get(model_id)
        return None if left is None else max(0.0, left - (now - self._at))


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
        return Joined(body["id"], body["name"], body["address"])

    async def unpair(self, node_id: str) -> Any:
        body = await self._owner.control("DELETE", f"/peers/{node_id}")
        return Joined(body["id"], body["name"], "")


@dataclass(frozen=True, slots=True)
class Joined:
    node_id: str
    name: str
    address: str
