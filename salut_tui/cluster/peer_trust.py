"""Trust in peers, for the UI and the control routes: pairing (a code, or joining a peer's),
unpairing (here and, over the link, on the peer), and what follows when a pairing ends either
way. A mixin of `Cluster`, kept apart so that cluster.py stays about links and state; it uses
only the attributes declared below.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the attributes Cluster gives this mixin
    import aiohttp

    from salut_tui.cluster.linking import Linker
    from salut_tui.cluster.model_service import ModelFiles
    from salut_tui.cluster.peers import PeerRecord, PeerTable
    from salut_tui.pairing.service import PairingService, PairingStatus
    from salut_tui.pairing.trust import TrustedPeer, TrustStore


class PeerTrust:
    if TYPE_CHECKING:
        table: PeerTable
        trust: TrustStore
        linker: Linker
        pairing: PairingService
        model_files: ModelFiles
        _session: aiohttp.ClientSession | None

        def _changed(self, reason: str) -> None: ...

    def _paired(self, peer: TrustedPeer) -> None:
        # The address pairing proved is the one to dial; what discovery announced for this id
        # stays a candidate (see _dial_any).
        record = self.table.upsert(peer.node_id, peer.name, peer.address, "trust")
        record.paired, record.dial_failed = True, False
        self.linker.retry_now(peer.node_id)
        self._changed(f"paired {peer.name}")

    def _forget_trust(self, node_id: str) -> None:
        self.trust.remove(node_id)
        self.model_files.tickets.forget_peer(node_id)
        record = self.table.get(node_id)
        if record is not None:
            record.paired = False
            self.table.forget_source(node_id, "trust")
        self._changed("unpaired")

    def peers(self) -> list[PeerRecord]:
        return self.table.all()

    def pairing_status(self) -> PairingStatus:
        return self.pairing.status()

    def create_pairing_code(self, ttl: float = 300.0) -> PairingStatus:
        return self.pairing.create_code(ttl)

    def cancel_pairing(self) -> None:
        self.pairing.cancel()

    async def join(self, address: str, code: str) -> TrustedPeer:
        assert self._session is not None
        if ":" not in address:  # a discovered peer picked by name or id
            record = self.table.find(address)
            if record is not None:
                address = record.address
        return await self.pairing.join(self._session, address, code)

    async def unpair(self, peer_ref: str) -> TrustedPeer | None:
        """Remove trust here and, when its link is up, tell the peer to drop us too."""
        record = self.table.find(peer_ref)
        trusted = self.trust.get(record.node_id) if record is not None else None
        if record is None or trusted is None:
            return None
        link = record.link
        if link is not None and not link.closed:
            with contextlib.suppress(Exception):
                await link.notice({"unpaired": True})
        self._forget_trust(record.node_id)
        await self.linker.close_links(record.node_id)  # the draining ones too
        return trusted
