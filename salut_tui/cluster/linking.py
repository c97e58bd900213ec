"""One live link per paired peer: dialling with back-off, accepting, and which link to keep.

Both ends dial when they have no link to a paired peer; if two links cross, both ends keep the
one dialled by the smaller node id, so they agree without talking. The other link drains
(`PeerLink.drain`): a stream already on it finishes there, new ones take the kept one. A link
that ends while it is the peer's link marks the peer unreachable (until the next dial links it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

from salut_tui.cluster.addresses import dial_order
from salut_tui.cluster.frames import FrameCipher
from salut_tui.cluster.link import PeerLink
from salut_tui.cluster.link_handshake import NotPaired, UnpairedByPeer, accept, dial
from salut_tui.cluster.peers import PeerTable
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.keys import CryptoFailure
from salut_tui.pairing.trust import TrustedPeer, TrustStore
from salut_tui.supervisor import Supervisor

log = logging.getLogger(__name__)

DIAL_EVERY = 0.25  # how often the dialer looks for paired peers without a link
MAX_BACKOFF = 2.0  # a returning peer is picked up within this
DIAL_FAILURES = (
    NotPaired, CryptoFailure, aiohttp.ClientError, OSError, TimeoutError, KeyError, TypeError,
    ValueError,
)  # fmt: skip

AnyWebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
# Builds the link object for an authenticated websocket (the cluster gives it its handlers).
MakeLink = Callable[[AnyWebSocket, FrameCipher, TrustedPeer, bool], PeerLink]


class Linker:
    def __init__(
        self,
        identity: Identity,
        trust: TrustStore,
        table: PeerTable,
        tasks: Supervisor,
        *,
        make_link: MakeLink,
        on_change: Callable[[str], None],
        on_unpaired_by_peer: Callable[[str], None],
    ) -> None:
        self.identity = identity
        self.trust = trust
        self.table = table
        self.session: aiohttp.ClientSession | None = None
        self._tasks = tasks
        self._make_link = make_link
        self._changed = on_change
        self._unpaired_by_peer = on_unpaired_by_peer
        self._dialing: set[str] = set()
        self._backoff: dict[str, tuple[float, float]] = {}  # node id -> (next try, delay)
        self.links: set[PeerLink] = set()  # every live link: attached, draining or refused
        self.stopping = False

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    def start(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._tasks.keep_running(self._dial_loop, name="dial loop")

    async def close_all(self) -> None:
        """The node is stopping (after the dial loop stopped): every link ends."""
        self.stopping = True
        for link in list(self.links):
            await link.close()

    def retry_now(self, node_id: str) -> None:
        """Forget the back-off of a peer worth dialling now (a new address, just paired)."""
        self._backoff.pop(node_id, None)

    async def close_links(self, node_id: str) -> None:
        """Every link to this peer, the draining ones too (it is no longer paired)."""
        for link in [lk for lk in self.links if lk.peer.node_id == node_id]:
            await link.close()

    # ---- dialling ----------------------------------------------------------------------------
    async def _dial_loop(self) -> None:
        while True:
            now = time.monotonic()
            for peer in self.trust.all():
                record = self.table.get(peer.node_id)
                if record is None or record.linked or peer.node_id in self._dialing:
                    continue
                if now >= self._backoff.get(peer.node_id, (0.0, 0.0))[0]:
                    self._dialing.add(peer.node_id)
                    self._tasks.spawn(self.dial(peer), name=f"dial {peer.name}")
            await asyncio.sleep(DIAL_EVERY)

    async def dial(self, peer: TrustedPeer) -> None:
        """Link to `peer` (at the first of its addresses that signs as it) and run the link."""
        try:
            ws, cipher, address = await self._dial_any(peer)
        except UnpairedByPeer as exc:
            log.info("%s", exc)
            self._unpaired_by_peer(peer.node_id)
            return
        except DIAL_FAILURES as exc:
            delay = min(MAX_BACKOFF, max(0.25, self._backoff.get(peer.node_id, (0.0, 0.0))[1] * 2))
            self._backoff[peer.node_id] = (time.monotonic() + delay, delay)
            record = self.table.get(peer.node_id)
            if record is not None and not record.dial_failed and not record.linked:
                record.dial_failed = True
                log.info(
                    "peer %s unreachable at %s: %s",
                    peer.name,
                    peer.address,
                    exc or type(exc).__name__,
                )
                self._changed(f"{peer.name} unreachable")
            return
        finally:  # whatever happened, the dial loop may try this peer again
            self._dialing.discard(peer.node_id)
        self._backoff.pop(peer.node_id, None)
        # The handshake proved the peer's key at this address: the trust store learns it.
        peer = self.trust.prove_address(peer.node_id, address) or peer
        await self.run_link(self._make_link(ws, cipher, peer, True))

    async def _dial_any(
        self, peer: TrustedPeer
    ) -> tuple[aiohttp.ClientWebSocketResponse, FrameCipher, str]:
        """Each proven address, then each announced candidate, until one signs as the peer.
        Every try is bounded (link_handshake.dial), so a tarpit or a flood of junk costs seconds, not
        the loop."""
        assert self.session is not None
        record = self.table.get(peer.node_id)
        failure: Exception = OSError("no address known")
        for address in dial_order(peer.addresses, record.candidates if record else ()):
            try:
                ws, cipher = await dial(self.session, self.identity, peer, address)
            except UnpairedByPeer:
                raise
            except DIAL_FAILURES as exc:
                failure = exc
                continue
            return ws, cipher, address
        raise failure

    # ---- accepting ---------------------------------------------------------------------------
    async def accept(
        self, ws: web.WebSocketResponse, on_authenticated: Callable[[], None] = lambda: None
    ) -> None:
        if self.stopping:
            raise NotPaired("this node is stopping")
        cipher, peer = await accept(ws, self.identity, self.trust)
        on_authenticated()
        await self.run_link(self._make_link(ws, cipher, peer, False))

    # ---- one link's life ---------------------------------------------------------------------
    async def run_link(self, link: PeerLink) -> None:
        """Attach `link` as its peer's link (or drain it: crossed links) and run it to its end."""
        peer = link.peer
        if self.stopping or peer.node_id not in self.trust:  # unpaired while dialling
            await link.close()
            return
        record = self.table.upsert(peer.node_id, peer.name, peer.address, "trust")
        record.paired = True
        current = record.link if record.linked else None
        dialer = self.node_id if link.initiator else peer.node_id
        self.links.add(link)
        if current is None or dialer == min(self.node_id, peer.node_id):
            # Attach before the one it replaces drains, so that link's ending finds itself
            # replaced and does not mark the peer unreachable.
            record.link, record.dial_failed, record.last_seen = link, False, time.time()
            if current is not None:
                current.drain()  # its streams finish on it; new requests take this link
            self._changed(f"linked {peer.name}")
        else:
            # The other end keeps the existing link too; but it may have carried a stream on
            # this one before it saw ours (two links crossed), so this one drains as well.
            link.drain()
        try:
            await link.run()
        finally:
            self.links.discard(link)
            if record.link is link:
                record.link, record.dial_failed, record.state = None, True, {}
                self._backoff.pop(peer.node_id, None)
                if not record.paired:  # unpaired while linked: keep it only if still discovered
                    self.table.forget_source(peer.node_id, "trust")
                self._changed(f"{peer.name} unreachable")
