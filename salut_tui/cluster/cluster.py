"""The cluster side of a node: identity, trust, discovery, peer links, state exchange, the
facts routing needs about peers (`peer_facts`), and proxying to them (`proxy`). Built by `Node`
unless the mode is solo; it sees the node only through the narrow `LocalNode` protocol.

Models on peers (copy, load, unload) are the `PeerModels` mixin's (`peer_models.py`); pairing
and unpairing the `PeerTrust` mixin's (`peer_trust.py`).

Links: every paired peer gets one link (`linking.Linker`: dialling, accepting, which of two
crossed links to keep); this class gives each link its handlers and reads what comes back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Protocol

import aiohttp
from aiohttp import web

from salut_tui.cluster.bulk import MODEL_BULK
from salut_tui.cluster.control import CONTROL_TOKEN_FILE, write_control_token
from salut_tui.cluster.discovery import ManualPeers, MdnsDiscovery
from salut_tui.cluster.fetch import MODEL_FETCH, serve_fetch
from salut_tui.cluster.frames import FrameCipher
from salut_tui.cluster.link import LinkLost, PeerLink, Stream
from salut_tui.cluster.linking import AnyWebSocket, Linker
from salut_tui.cluster.local import LocalNode
from salut_tui.cluster.model_service import MODEL_MANIFEST, MODEL_READ, ModelFiles
from salut_tui.cluster.models import merge_models, merge_sharded
from salut_tui.cluster.peer_models import PeerModels
from salut_tui.cluster.peer_trust import PeerTrust
from salut_tui.cluster.peers import PeerRecord, PeerTable, clean_state
from salut_tui.cluster.proxy import GENERATE, generate_remote, serve_generate
from salut_tui.cluster.remote_models import (
    MODEL_LOAD,
    MODEL_UNLOAD,
    serve_load,
    serve_unload,
)
from salut_tui.cluster.tunnel import Tunnel
from salut_tui.config import Settings
from salut_tui.engine.types import Chunk, GenerationRequest
from salut_tui.events import EventBus, PairingChanged, PeersChanged
from salut_tui.pairing.files import ensure_private_dir
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.service import PairingService
from salut_tui.pairing.trust import TrustedPeer, TrustStore
from salut_tui.routing import PeerFacts
from salut_tui.supervisor import Supervisor
from salut_tui.transfer.partial import list_partials
from salut_tui.transfers import Transfers
from salut_tui.views import ClusterView, ModelInfo, PeerView, ShardView, to_json

log = logging.getLogger(__name__)

AVAILABLE_REFRESH = 10.0  # seconds between rescans of the models this node could load


SHARD_METHODS = "shard."  # link methods and tunnels served by the node's sharded instances


class ShardEndpoint(Protocol):
    """What the links hand to the node's sharded instances (`shard.ShardManager`)."""

    def serve(self, peer_id: str, method: str, body: dict) -> AsyncIterator[bytes]: ...
    async def serve_tunnel(self, peer_id: str, method: str, body: dict, tunnel: Tunnel) -> None: ...
    def views(self) -> list[ShardView]: ...


class Cluster(PeerModels, PeerTrust):
    def __init__(
        self,
        local: LocalNode,
        settings: Settings,
        events: EventBus,
        transfers: Transfers | None = None,
    ) -> None:
        self.local = local
        self.events = events
        self.transfers = transfers  # where copies peers ask of this node show (none: nowhere)
        self.settings = settings
        data = self.settings.data_path()
        ensure_private_dir(data)
        self.identity = Identity.load_or_create(data)
        self.trust = TrustStore(data)
        self.table = PeerTable()
        for peer in self.trust.all():
            self.table.upsert(peer.node_id, peer.name, peer.address, "trust").paired = True
        self.pairing = PairingService(
            self.identity,
            self.trust,
            name=self.name,
            api_port=lambda: local.port,
            on_change=lambda s: events.publish(PairingChanged(s.state.value, s.detail)),
            on_paired=self._paired,
        )
        self.control_token = secrets.token_urlsafe(24)
        self._session: aiohttp.ClientSession | None = None
        self._discovery: MdnsDiscovery | None = None
        self._tasks = Supervisor("cluster")
        self.linker = Linker(
            self.identity, self.trust, self.table, self._tasks, make_link=self._make_link,
            on_change=self._changed, on_unpaired_by_peer=self._forget_trust,
        )  # fmt: skip
        self._available: tuple[float, list[str]] = (float("-inf"), [])
        self._partials: dict[str, list[str]] = {}  # partial copies here, rescanned with those
        self.model_files = ModelFiles(local.locate_model, lambda: local.port)
        self._fetch_locks: dict[str, asyncio.Lock] = {}  # model -> one copy for a peer at once
        self.shards: ShardEndpoint | None = None  # plugged in by the node when it can run shards

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    @property
    def name(self) -> str:
        return self.settings.display_name()

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        bound = self.settings.host not in ("", "0.0.0.0", "::")
        write_control_token(self.settings, self.local.port, self.control_token)
        # Bound to one address: speak from it too, so peers see the address we announce.
        local = (self.settings.host, 0) if bound else None
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=local))
        try:
            self._discovery = MdnsDiscovery(
                node_id=self.node_id, name=self.name, version=self.local.version, host=self.settings.host,
                port=self.local.port, on_seen=self._seen, on_gone=self._gone,
            )  # fmt: skip
            await self._discovery.start()
        except OSError as exc:  # no multicast here: listed peers still work
            log.warning("zeroconf discovery unavailable (%s); using listed peers only", exc)
            self._discovery = None
        if self.settings.peers:
            manual = ManualPeers(
                self.settings.peers,
                self._session,
                own_id=self.node_id,
                on_seen=self._seen,
                on_gone=self._gone,
            )
            self._tasks.keep_running(manual.run, name="listed peers")
        self.linker.start(self._session)
        log.info(
            "node id %s (%s), %d paired peer(s)", self.node_id, self.name, len(self.trust.all())
        )

    async def stop(self) -> None:
        self.linker.stopping = True  # no new links from here on
        await self._tasks.stop()
        await self.linker.close_all()
        if self._discovery is not None:
            await self._discovery.stop()
        if self._session is not None:
            await self._session.close()
        (self.settings.data_path() / CONTROL_TOKEN_FILE).unlink(missing_ok=True)

    def _changed(self, reason: str) -> None:
        self.events.publish(PeersChanged(reason))

    # ---- discovery -------------------------------------------------------------------------
    def _seen(self, node_id: str, name: str, address: str, version: str, source: str) -> None:
        # Unauthenticated: for a paired peer this only adds a candidate address (never touches
        # the trust store); a new one is worth dialling now.
        known = self.table.get(node_id)
        is_new = known is None or source not in known.sources
        new_address = known is None or address not in known.candidates
        record = self.table.upsert(node_id, name, address, source, version)
        if record.paired and not record.linked and new_address:
            self.linker.retry_now(node_id)
        if is_new:
            self._changed(f"seen {record.name}")

    def _gone(self, node_id: str, source: str) -> None:
        if self.table.forget_source(node_id, source) is not None:
            self._changed("lost")

    # ---- links -----------------------------------------------------------------------------
    async def accept_link(
        self, ws: web.WebSocketResponse, on_authenticated: Callable[[], None] = lambda: None
    ) -> None:
        await self.linker.accept(ws, on_authenticated)

    def _make_link(
        self, ws: AnyWebSocket, cipher: FrameCipher, peer: TrustedPeer, initiator: bool
    ) -> PeerLink:
        def handler(method: str, body: dict) -> AsyncIterator[bytes]:
            # Every method here is open to this one paired peer only (the link proved who it is).
            if method == GENERATE:
                return serve_generate(self.local, peer.name, body)
            if method == MODEL_MANIFEST:
                return self.model_files.manifest(body)
            if method == MODEL_READ:
                return self.model_files.read(body)
            if method == MODEL_BULK:  # a ticket keyed to this link session only
                return self.model_files.bulk_ticket(peer.node_id, cipher.exporter(), body)
            if method == MODEL_LOAD:
                return serve_load(self.local, self.events, body, node_name=self.name)
            if method == MODEL_UNLOAD:
                return serve_unload(self.local, body)
            if method == MODEL_FETCH:  # copy a model's files from this peer, at its asking
                return serve_fetch(
                    self._live_link(peer.node_id), self.settings.models_path(), body,
                    self._fetch_locks.setdefault(str(body.get("model")), asyncio.Lock()),
                    on_done=self._models_changed, board=self.transfers,
                )  # fmt: skip
            if method.startswith(SHARD_METHODS) and self.shards is not None:
                return self.shards.serve(peer.node_id, method, body)
            raise ValueError(f"unknown peer method {method!r}")

        async def tunnels(method: str, body: dict, tunnel: Tunnel) -> None:
            if not method.startswith(SHARD_METHODS) or self.shards is None:
                raise ValueError(f"unknown peer tunnel {method!r}")
            await self.shards.serve_tunnel(peer.node_id, method, body, tunnel)

        return PeerLink(
            ws, cipher, peer=peer, initiator=initiator, handler=handler, state=self.local_state,
            on_state=self._on_state, on_notice=self._on_notice, tunnel_handler=tunnels,
        )  # fmt: skip

    def local_state(self) -> dict:
        """What this node tells its peers every second (see PeerLink)."""
        stats = self.local.stats()
        loaded = self.local.loaded_model_ids()
        now = time.monotonic()
        if now - self._available[0] > AVAILABLE_REFRESH:
            # Listing loadable models scans directories: once in a while, not on every tick.
            self._available = (now, [m.id for m in self.local.local_models()])
            self._partials = list_partials(self.settings.models_path())
        return {
            "mode": self.settings.mode,
            "loaded_models": loaded,
            "available_models": sorted(set(self._available[1]) | set(loaded)),
            "vram_total": stats.memory_total,
            "vram_free": stats.memory_available,
            "requests_in_flight": stats.in_flight,
            "queued": stats.queued,
            "tokens_per_second": round(stats.tokens_per_second, 2),
            "shards": [to_json(v) for v in self.shards.views()] if self.shards else [],
            **({"partial_models": self._partials} if self._partials else {}),
        }

    def _on_state(self, link: PeerLink, state: dict) -> None:
        state = clean_state(state)  # what a peer says is data; it enters here
        record = self.table.get(link.peer.node_id)
        if record is None or record.link is not link:
            return
        was_ok = record.health == "ok"
        changed = state.get("loaded_models") != record.state.get("loaded_models") or _shard_states(
            state
        ) != _shard_states(record.state)
        record.remember_state(state)
        record.state_at, record.last_seen = time.monotonic(), time.time()
        if changed or not was_ok:
            self._changed(f"state {record.name}")

    def _on_notice(self, link: PeerLink, body: dict) -> None:
        if body.get("unpaired"):
            log.info("peer %s unpaired this node", link.peer.name)
            self._forget_trust(link.peer.node_id)
            self._tasks.spawn(
                self.linker.close_links(link.peer.node_id), name=f"close {link.peer.name}"
            )

    # ---- what routing and the node call -------------------------------------------------------
    def peer_facts(self) -> tuple[PeerFacts, ...]:
        """Every paired peer as the routing decision sees it; a coordinator of an instance this
        node is a ready part of is known to serve it before its own state says so."""
        facts = []
        for record in self.table.all():
            f = record.route_facts()
            if f is None:
                continue
            joined = {v.model for v in self._joined(record.node_id) if v.state == "ready"}
            facts.append(dataclasses.replace(f, sharded=f.sharded | joined) if joined else f)
        return tuple(facts)

    def _joined(self, coordinator: str) -> list[ShardView]:
        """This node's parts (rank > 0) of live instances `coordinator` runs. A part knows its
        coordinator and ranks from the join order itself, at once; the coordinator's own state
        says so only at its next tick, a second later."""
        if self.shards is None:
            return []
        return [
            v for v in self.shards.views()
            if v.rank > 0 and v.coordinator == coordinator and v.state in ("starting", "ready")
        ]  # fmt: skip

    # ---- what sharded instances call (shard.PeerCalls) ----------------------------------------
    def _live_link(self, node_id: str) -> PeerLink:
        record = self.table.get(node_id)
        if record is None or record.link is None or not record.linked:
            raise LinkLost(f"no link to peer {record.name if record else node_id}")
        return record.link

    async def open_stream(self, node_id: str, method: str, body: dict) -> Stream:
        return await self._live_link(node_id).open(method, body)

    async def open_tunnel(self, node_id: str, method: str, body: dict) -> Tunnel:
        return await self._live_link(node_id).open_tunnel(method, body)

    def shard_coordinator(self, model_id: str) -> str | None:
        """A linked peer coordinating an instance of `model_id` this node is a part of, else
        a healthy peer that says it coordinates a ready one."""
        for record in self.table.all():
            if record.linked and any(v.model == model_id for v in self._joined(record.node_id)):
                return record.node_id
        for record in self.table.all():
            if model_id in record.coordinated():
                return record.node_id
        return None

    def partial_weights(self, node_id: str, model_id: str) -> frozenset[str]:
        """The weight files of `model_id` a peer's partial copy holds (none: empty)."""
        record = self.table.get(node_id)
        return record.partial_weights(model_id) if record is not None else frozenset()

    def peer_name(self, node_id: str) -> str:
        record = self.table.get(node_id)
        return record.name if record is not None else node_id

    def proxy(
        self, request: GenerationRequest, candidates: tuple[str, ...]
    ) -> AsyncGenerator[Chunk, None]:
        """Chunks for `request` from the first of these peers (node ids) that starts it."""
        records = [r for i in candidates if (r := self.table.get(i)) is not None]
        return generate_remote(request, [(r.name, _link_of(r)) for r in records])

    def _models_changed(self) -> None:
        self._available = (float("-inf"), [])  # tell peers at the next tick

    def merge_models(self, local: list[ModelInfo]) -> list[ModelInfo]:
        healthy = [(r.name, r.state) for r in self.table.all() if r.health == "ok"]
        shards = list(self.shards.views()) if self.shards is not None else []
        shards += [v for r in self.table.all() if r.health == "ok" for v in r.shards]
        return merge_sharded(merge_models(local, healthy), shards)

    def view(self) -> ClusterView:
        node = dataclasses.replace(self.local.self_view(), id=self.node_id)
        return ClusterView(node, self.peer_views())

    def peer_views(self) -> tuple[PeerView, ...]:
        return tuple(r.view() for r in self.table.all())

    def hello(self) -> dict:
        return {
            "id": self.node_id,
            "name": self.name,
            "version": self.local.version,
            "port": self.local.port,
        }


def _shard_states(state: dict) -> list:
    return [(s.get("instance"), s.get("state")) for s in state.get("shards", ())]


def _link_of(record: PeerRecord) -> Callable[[], PeerLink | None]:
    """The record's link at the time of asking (it may be replaced while a request waits)."""
    return lambda: record.link
