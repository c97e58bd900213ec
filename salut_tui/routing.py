"""Where a request goes: the one routing decision of a node (pure: no sockets, no clock, no disk).

`Node.generate` gathers the facts once per request (is the model loaded here, did the registry
find it on disk here, what each paired peer last said it holds) and calls `decide` once. The
answer is one of the `Route` types below; the node acts on it with a `match`.

Order of preference:
  1. a request a peer forwarded here is served here or nowhere (never bounced to a third node);
  2. the model is loaded here: `Local`; this node coordinates a sharded instance of it:
     `Sharded(None)` (served by that instance);
  3. healthy peers that have it loaded, least loaded then nearest: `Peer`;
  4. a healthy peer coordinates a sharded instance of it: `Sharded(that peer)` (sent to it);
  5. this node could load it: `LoadLocally` (loading here beats loading on a peer);
  6. healthy peers that could load it: `Peer`;
  7. a paired peer is known to hold it but is stopped or unreachable: `PeerUnreachable`
     (503 with Retry-After: it may well be back in a moment);
  8. `NotFound`.

Extending: a new way to serve (sharded model instances spanning several nodes) adds one answer
type to `Route`, the facts it needs to `RouteFacts`, and one step above; `match` statements on
`Route` then fail type checking (`assert_never`) until they handle it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from salut_tui.views import Health

# What a client is told to wait before retrying a model whose peer is unreachable: about the
# dialer's longest backoff plus a link set-up, so the retry finds the peer if it is back.
PEER_RETRY_AFTER_S = 3


# ---- facts -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PeerFacts:
    """One paired peer as routing needs it. `loaded`/`available` are what it last said, kept
    after its link drops so that a stopped peer's models are still known to be its."""

    node_id: str
    name: str
    health: Health
    loaded: frozenset[str] = frozenset()
    available: frozenset[str] = frozenset()
    load: int = 0  # requests in flight + queued on that peer
    rtt: float | None = None
    sharded: frozenset[str] = frozenset()  # models it coordinates a ready sharded instance of


@dataclass(frozen=True, slots=True)
class RouteFacts:
    model: str
    forwarded: bool = False  # a peer sent it here to be served here
    loaded_here: bool = False
    loadable_here: bool = False  # this node's registry found it (or it is the bundled default)
    source: Path | None = None  # where the registry found its files (None: resolve when loading)
    sharded_here: bool = False  # this node coordinates a ready sharded instance of the model
    peers: tuple[PeerFacts, ...] = field(default=())


# ---- answers -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Local:
    """The model is loaded here: this node's engine serves it."""


@dataclass(frozen=True, slots=True)
class LoadLocally:
    """Load the model here first (refused with 507 if it does not fit), then serve it."""

    source: Path | None  # the directory found while gathering the facts; None: resolve it


@dataclass(frozen=True, slots=True)
class Peer:
    """Proxy to these peers (node ids), tried in order until one starts the stream."""

    candidates: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PeerUnreachable:
    """Paired peers hold the model but none answers now: 503 peer_unreachable, Retry-After."""

    peers: tuple[str, ...]  # their names, for the message
    retry_after: int = PEER_RETRY_AFTER_S


@dataclass(frozen=True, slots=True)
class NotFound:
    """Nobody here or among the reachable or known peers has the model: 404."""


@dataclass(frozen=True, slots=True)
class Sharded:
    """A sharded instance serves the model: its coordinator is this node (None) or a peer,
    to which the request is sent like any proxied request."""

    coordinator: str | None


Route = Local | LoadLocally | Peer | PeerUnreachable | NotFound | Sharded


# ---- the decision ------------------------------------------------------------------------------
def decide(facts: RouteFacts) -> Route:
    model = facts.model
    if facts.forwarded:
        if facts.loaded_here:
            return Local()
        if facts.sharded_here:
            return Sharded(None)
        return LoadLocally(facts.source) if facts.loadable_here else NotFound()
    if facts.loaded_here:
        return Local()
    if facts.sharded_here:
        return Sharded(None)
    healthy = [p for p in facts.peers if p.health == "ok"]
    holders = sorted((p for p in healthy if model in p.loaded), key=_order)
    loaders = sorted(
        (p for p in healthy if model not in p.loaded and model in p.available), key=_order
    )
    if holders:
        # Peers that could load it come after the holders, unless this node could load it.
        extra = [] if facts.loadable_here else loaders
        return Peer(tuple(p.node_id for p in (*holders, *extra)))
    coordinators = sorted((p for p in healthy if model in p.sharded), key=_order)
    if coordinators:
        return Sharded(coordinators[0].node_id)
    if facts.loadable_here:
        return LoadLocally(facts.source)
    if loaders:
        return Peer(tuple(p.node_id for p in loaders))
    gone = [p.name for p in facts.peers if p.health in _GONE and model in p.loaded | p.available]
    if gone:
        return PeerUnreachable(tuple(gone))
    return NotFound()


_GONE = ("connecting", "unreachable")  # paired, but stopped or not answering


def _order(p: PeerFacts) -> tuple[int, float, str]:
    return (p.load, p.rtt if p.rtt is not None else float("inf"), p.node_id)
