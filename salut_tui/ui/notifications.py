"""Cluster events worth a toast, and the history of every toast the app showed.

Peer health is worked out when read (a peer whose state stops arriving turns "connecting" or
"unreachable" without any event), so `PeerWatch` compares what the peer table says once a second
with what it said before: a pure diff of views, the same for an in-process node and an attached
one. A drop is only announced once it has lasted `DROP_AFTER` looks, so a late state update does
not flash a warning.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from salut_tui.views import PeerView

Severity = Literal["information", "warning", "error"]
HISTORY_LIMIT = 200
DROP_AFTER = 2  # consecutive looks at a paired peer that is not ok before it counts as dropped


@dataclass(frozen=True, slots=True)
class Notice:
    """One toast, as the history shows it."""

    created: float  # wall time
    severity: Severity
    text: str


@dataclass(frozen=True, slots=True)
class PeerNotice:
    """What `PeerWatch` found: a peer paired, unpaired, dropped or came back."""

    kind: Literal["paired", "unpaired", "dropped", "returned", "linked"]
    peer_id: str
    name: str
    health: str = ""

    @property
    def severity(self) -> Severity:
        return "warning" if self.kind in ("unpaired", "dropped") else "information"

    @property
    def text(self) -> str:
        if self.kind == "paired":
            return f"Paired with {self.name}."
        if self.kind == "unpaired":
            return f"Unpaired {self.name}: it no longer shares models with this node."
        if self.kind == "dropped":
            return f"{self.name} dropped ({self.health}): its requests go elsewhere."
        if self.kind == "linked":
            return f"Linked with {self.name}."
        return f"{self.name} is back."


@dataclass(slots=True)
class _Seen:
    name: str
    paired: bool
    up: bool  # announced as ok (a drop was not announced since)
    bad_looks: int = 0
    ever_up: bool = False


@dataclass(slots=True)
class PeerWatch:
    """Feed it the peer table once a second; it says what changed for paired peers."""

    _seen: dict[str, _Seen] | None = None

    def observe(self, peers: Iterable[PeerView]) -> list[PeerNotice]:
        now = {p.id: p for p in peers}
        if self._seen is None:  # the first look is the starting point, not news
            self._seen = {
                i: _Seen(p.name, p.paired, ok, ever_up=ok)
                for i, p in now.items()
                for ok in [p.paired and p.health == "ok"]
            }
            return []
        notices: list[PeerNotice] = []
        for peer_id, before in list(self._seen.items()):
            peer = now.get(peer_id)
            if before.paired and (peer is None or not peer.paired):
                notices.append(PeerNotice("unpaired", peer_id, before.name))
            if peer is None:
                del self._seen[peer_id]
        for peer_id, peer in now.items():
            seen = self._seen.get(peer_id)
            if seen is None:
                seen = self._seen[peer_id] = _Seen(peer.name, False, False)
            seen.name = peer.name or seen.name
            if peer.paired and not seen.paired:
                notices.append(PeerNotice("paired", peer_id, seen.name))
                seen.up = seen.ever_up = peer.health == "ok"
            elif peer.paired:
                notices.extend(self._health(seen, peer))
            seen.paired = peer.paired
            if not peer.paired:
                seen.up, seen.ever_up, seen.bad_looks = False, False, 0
        return notices

    @staticmethod
    def _health(seen: _Seen, peer: PeerView) -> list[PeerNotice]:
        if peer.health == "ok":
            seen.bad_looks = 0
            if not seen.up:
                kind: Literal["returned", "linked"] = "returned" if seen.ever_up else "linked"
                seen.up = seen.ever_up = True
                return [PeerNotice(kind, peer.id, seen.name)]
            return []
        seen.bad_looks += 1
        if seen.up and seen.bad_looks >= DROP_AFTER:
            seen.up = False
            return [PeerNotice("dropped", peer.id, seen.name, peer.health)]
        return []


@dataclass(slots=True)
class NoticeHistory:
    """Every toast, newest last, bounded."""

    notices: deque[Notice] = field(default_factory=lambda: deque(maxlen=HISTORY_LIMIT))
    unread: int = 0

    def add(self, severity: Severity, text: str) -> Notice:
        notice = Notice(time.time(), severity, text)
        self.notices.append(notice)
        self.unread += 1
        return notice

    def read(self) -> list[Notice]:
        """Newest first; marks them read."""
        self.unread = 0
        return list(reversed(self.notices))
