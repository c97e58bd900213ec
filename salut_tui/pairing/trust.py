"""The trust store: the public keys of paired peers, kept as JSON (mode 0600) in the data dir.

Only a key in this store opens a peer link; pairing adds one, unpairing removes it. It survives
restarts because it is rewritten atomically on every change.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from salut_tui.pairing.identity import write_private_file
from salut_tui.pairing.keys import fingerprint

TRUST_FILE = "trusted_peers.json"


@dataclass(frozen=True, slots=True)
class TrustedPeer:
    node_id: str
    name: str
    public_key: str  # hex
    address: str  # last known host:port of its API/peer endpoint
    paired_at: float

    @property
    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.public_key)


class TrustStore:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / TRUST_FILE
        self._peers: dict[str, TrustedPeer] = {}
        if self.path.exists():
            for item in json.loads(self.path.read_text(encoding="utf-8")).get("peers", []):
                peer = TrustedPeer(**item)
                # A record whose id does not match its key was tampered with: ignore it.
                if fingerprint(peer.key_bytes) == peer.node_id:
                    self._peers[peer.node_id] = peer

    def get(self, node_id: str) -> TrustedPeer | None:
        return self._peers.get(node_id)

    def all(self) -> list[TrustedPeer]:
        return list(self._peers.values())

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._peers

    def add(self, public_key: bytes, name: str, address: str) -> TrustedPeer:
        peer = TrustedPeer(fingerprint(public_key), name, public_key.hex(), address, time.time())
        self._peers[peer.node_id] = peer
        self._save()
        return peer

    def update_address(self, node_id: str, address: str, name: str | None = None) -> None:
        peer = self._peers.get(node_id)
        if peer is None or (peer.address == address and (name is None or name == peer.name)):
            return
        self._peers[node_id] = replace(peer, address=address, name=name or peer.name)
        self._save()

    def remove(self, node_id: str) -> bool:
        if self._peers.pop(node_id, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        body = {"peers": [asdict(p) for p in self._peers.values()]}
        write_private_file(self.path, json.dumps(body, indent=2).encode())
