"""The peer table: every node this one knows about (discovered, listed, or paired) and its
health, as GET /v1/cluster and the Peers screen show it.

For a paired peer, the name and address come from the trust store (what a handshake proved);
discovery only adds candidate addresses (`addresses.py`). For an unpaired one, the latest
announcement is all there is."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from salut_tui.cluster.addresses import note_candidate
from salut_tui.cluster.link import PeerLink
from salut_tui.pairing.names import clean_name
from salut_tui.routing import PeerFacts
from salut_tui.transfer.partial import clean_partials
from salut_tui.views import Health, PeerView, ShardView, to_json

STATE_STALE_AFTER = 5.0  # seconds without a state update before a linked peer is "unreachable"


@dataclass
class PeerRecord:
    node_id: str
    name: str
    address: str  # host:port of its API and peer endpoint (paired: the last proven one)
    version: str = ""
    paired: bool = False
    sources: set[str] = field(default_factory=set)  # "mdns", "manual", "trust"
    link: PeerLink | None = None
    dial_failed: bool = False  # the last attempt to reach it failed
    last_seen: float | None = None  # wall time of the last sign of life
    state: dict = field(default_factory=dict)  # its latest STATE message
    state_at: float = 0.0  # monotonic time of that message
    candidates: tuple[str, ...] = ()  # announced addresses (unauthenticated), latest first
    # The models of its last state, kept when its link drops: a stopped peer's models are still
    # known to be there (requests for them get 503 "unreachable", not 404 "does not exist").
    known_loaded: frozenset[str] = frozenset()
    known_available: frozenset[str] = frozenset()
    shards: tuple[ShardView, ...] = ()  # its parts of sharded instances, from its last state

    @property
    def linked(self) -> bool:
        return self.link is not None and not self.link.closed

    @property
    def health(self) -> Health:
        if not self.paired:
            return "discovered" if self.sources - {"trust"} else "unknown"
        if self.linked and time.monotonic() - self.state_at < STATE_STALE_AFTER:
            return "ok"
        if self.linked or not self.dial_failed:
            return "connecting"
        return "unreachable"

    def remember_state(self, state: dict) -> None:
        self.state = state
        self.known_loaded = frozenset(state.get("loaded_models", ()))
        self.known_available = frozenset(state.get("available_models", ()))
        shards = []
        for body in state.get("shards", ()):
            try:
                shards.append(ShardView.from_json(body))
            except (KeyError, TypeError, ValueError):
                continue  # a newer peer's shape: skip what we cannot read
        self.shards = tuple(shards)

    def partial_weights(self, model_id: str) -> frozenset[str]:
        """The weight files of `model_id` its partial copy holds (from its last state)."""
        return frozenset(self.state.get("partial_models", {}).get(model_id, ()))

    def coordinated(self) -> frozenset[str]:
        """The models it coordinates a ready sharded instance of (while its state is fresh)."""
        if self.health != "ok":
            return frozenset()
        return frozenset(v.model for v in self.shards if v.rank == 0 and v.state == "ready")

    def route_facts(self) -> PeerFacts | None:
        """What routing needs to know of it; None unless it is paired."""
        if not self.paired:
            return None
        s = self.state if self.health == "ok" else {}
        return PeerFacts(
            self.node_id,
            self.name,
            self.health,
            self.known_loaded,
            self.known_available,
            int(s.get("requests_in_flight", 0)) + int(s.get("queued", 0)),
            self.link.rtt if self.link is not None and self.linked else None,
            self.coordinated(),
        )

    def view(self) -> PeerView:
        s = self.state if self.health == "ok" else {}
        rtt = self.link.rtt if self.linked and self.link else None
        return PeerView(
            id=self.node_id,
            name=self.name,
            address=self.address,
            version=self.version,
            paired=self.paired,
            health=self.health,
            last_seen=round(self.last_seen, 3) if self.last_seen else None,
            latency_ms=round(rtt * 1000, 2) if rtt is not None else None,
            vram_total=s.get("vram_total"),
            vram_free=s.get("vram_free"),
            loaded_models=tuple(s.get("loaded_models", ())),
            available_models=tuple(s.get("available_models", ())),
            requests_in_flight=int(s.get("requests_in_flight", 0)),
            tokens_per_second=float(s.get("tokens_per_second", 0.0)),
            mode=s.get("mode"),
            discovered_by=tuple(sorted(self.sources)),
            shards=self.shards if self.health == "ok" else (),
        )


_MODEL_LISTS = ("loaded_models", "available_models")
_NUMBERS = ("vram_total", "vram_free", "requests_in_flight", "queued", "tokens_per_second")


def clean_state(state: object) -> dict:
    """A peer's STATE message as data: model ids that are plain text (others are dropped, not
    rewritten, so an id is never changed into another one), numbers that are numbers, and a
    clean mode. It enters here once; the table, /v1/models and the UI only ever see this."""
    if not isinstance(state, dict):
        return {}
    out: dict = {}
    for key in _MODEL_LISTS:
        items = state.get(key, [])
        out[key] = [
            m for m in items if isinstance(m, str) and m and clean_name(m, 256) == m
        ] if isinstance(items, list) else []  # fmt: skip
    for key in _NUMBERS:
        value = state.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            out[key] = value
    if isinstance(state.get("mode"), str):
        out["mode"] = clean_name(state["mode"], 32)
    partial = clean_partials(state.get("partial_models"))
    if partial:  # only nodes holding some layers of a model (see transfer.partial) send any
        out["partial_models"] = partial
    shards = state.get("shards")
    if isinstance(shards, list) and shards:  # only nodes running sharded instances send any
        out["shards"] = [
            to_json(v) for v in map(_clean_shard, shards[:MAX_SHARDS]) if v is not None
        ]
    return out


MAX_SHARDS = 64  # parts of sharded instances a peer may report


def _clean_shard(body: object) -> ShardView | None:
    """One of a peer's shard views, or None: a model id or instance that is not plain text is
    dropped (as model lists are); names and free text are cleaned."""
    try:
        view = ShardView.from_json(body)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not view.model or clean_name(view.model, 256) != view.model:
        return None
    if clean_name(view.instance, 64) != view.instance or not view.participants:
        return None
    parts = tuple(replace(p, name=clean_name(p.name)) for p in view.participants[:MAX_SHARDS])
    reason = clean_name(view.reason, 300) if view.reason else None
    return replace(view, participants=parts, reason=reason, state=clean_name(view.state, 16))


class PeerTable:
    def __init__(self) -> None:
        self._peers: dict[str, PeerRecord] = {}

    def get(self, node_id: str) -> PeerRecord | None:
        return self._peers.get(node_id)

    def all(self) -> list[PeerRecord]:
        return sorted(self._peers.values(), key=lambda p: (not p.paired, p.name, p.node_id))

    def upsert(
        self, node_id: str, name: str, address: str, source: str, version: str = ""
    ) -> PeerRecord:
        """Note what `source` says about a node. "trust" (the trust store, a proven link) sets its
        name and address; discovery sets them only while the node is unpaired, and otherwise
        adds a candidate address."""
        record = self._peers.get(node_id)
        if record is None:
            record = self._peers[node_id] = PeerRecord(node_id, name, address)
        if source == "trust" or not record.paired:
            record.name = name or record.name
            record.address = address or record.address
        if source != "trust":
            record.candidates = note_candidate(record.candidates, address)
            record.version = version or record.version
            record.last_seen = time.time()
        record.sources.add(source)
        return record

    def forget_source(self, node_id: str, source: str) -> PeerRecord | None:
        """A discovery source lost the node; drop it entirely when nothing else knows it."""
        record = self._peers.get(node_id)
        if record is None:
            return None
        record.sources.discard(source)
        if not record.sources and not record.paired and not record.linked:
            del self._peers[node_id]
        return record

    def find(self, text: str) -> PeerRecord | None:
        """A peer by exact id, unique id prefix, or exact name (for `salut unpair PEER`)."""
        if text in self._peers:
            return self._peers[text]
        matches = [p for p in self._peers.values() if p.node_id.startswith(text) or p.name == text]
        return matches[0] if len(matches) == 1 else None
