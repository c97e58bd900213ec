"""Copies and downloads in progress on this node, as values the UI and the control routes read.

A `Transfers` board holds one `TransferView` per transfer (a pull from a peer, a Hub
download, or a copy for a sharded load: "copy" on the node that sends it, "fetch" on the one
that receives it), replaced on every update and published as `TransferChanged`, so the Models screen
and a `salut pull` waiting on the control route see the same figures.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from typing import Literal

from salut_tui.events import EventBus, TransferChanged
from salut_tui.transfer.progress import RateMeter

# copy: to a peer, for its part of a sharded load; fetch: the same copy seen from that peer
TransferKind = Literal["pull", "download", "copy", "fetch"]
TransferState = Literal["running", "done", "failed"]


@dataclass(frozen=True, slots=True)
class TransferView:
    id: str
    kind: TransferKind
    model: str
    source: str  # the peer's name (a copy: the peer it goes to), or the hub's address
    state: TransferState
    stage: str
    done: int
    total: int
    received: int  # bytes that travelled in this attempt (a resumed copy sends fewer)
    rate: float  # bytes per second
    eta: float | None
    message: str = ""  # the error, or where the model now is
    started_at: float = 0.0


class Transfers:
    def __init__(self, events: EventBus) -> None:
        self._events = events
        self._ids = itertools.count(1)
        self._views: dict[str, TransferView] = {}
        self._meters: dict[str, RateMeter] = {}

    def start(self, kind: TransferKind, model: str, source: str) -> str:
        transfer_id = f"{kind}-{next(self._ids)}"
        now = time.monotonic()
        self._meters[transfer_id] = RateMeter(0, 0, now)
        self._set(TransferView(transfer_id, kind, model, source, "running", "starting",
                               0, 0, 0, 0.0, None, started_at=time.time()))  # fmt: skip
        return transfer_id

    def update(self, transfer_id: str, done: int, total: int, received: int, stage: str) -> None:
        meter = self._meters[transfer_id]
        meter.total = total
        snap = meter.update(received, time.monotonic())  # the rate of what travels now
        left = max(0, total - done)
        eta = left / snap.rate if snap.rate > 0 else (0.0 if left == 0 else None)
        self._set(replace(self._views[transfer_id], stage=stage, done=done, total=total,
                          received=received, rate=snap.rate, eta=eta))  # fmt: skip

    def finish(self, transfer_id: str, message: str) -> None:
        view = self._views[transfer_id]
        self._set(replace(view, state="done", stage="done", done=view.total, eta=0.0,
                          message=message))  # fmt: skip

    def fail(self, transfer_id: str, message: str) -> None:
        self._set(replace(self._views[transfer_id], state="failed", stage="failed", eta=None,
                          message=message))  # fmt: skip

    def get(self, transfer_id: str) -> TransferView | None:
        return self._views.get(transfer_id)

    def all(self) -> list[TransferView]:
        return list(self._views.values())

    def running(self, kind: TransferKind, model: str) -> TransferView | None:
        return next(
            (v for v in self._views.values()
             if v.kind == kind and v.model == model and v.state == "running"),
            None,
        )  # fmt: skip

    def _set(self, view: TransferView) -> None:
        self._views[view.id] = view
        self._events.publish(TransferChanged(view))
