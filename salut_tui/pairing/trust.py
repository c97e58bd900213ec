"""The trust store: the public keys of paired peers, kept as JSON (mode 0600) in the data dir.

Only a key in this store opens a peer link; pairing adds one, unpairing removes it. It survives
restarts because it is rewritten atomically on every change.

Addresses here are *proven*: where the peer was when pairing completed, then every address at
which a dialled link passed the signed handshake. Nothing unauthenticated (an mDNS record, a
listed-peer hello) writes here; those are candidates, kept in memory by the peer table.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from salut_tui.pairing.files import DataFileError, read_private_file, write_private_file
from salut_tui.pairing.keys import fingerprint
from salut_tui.pairing.names import clean_name

TRUST_FILE = "trusted_peers.json"
MAX_PROVEN = 4  # addresses remembered per peer, the most recently proven first


@dataclass(frozen=True, slots=True)
class TrustedPeer:
    node_id: str
    name: str
    public_key: str  # hex
    addresses: tuple[str, ...]  # proven host:port of its API/peer endpoint, latest first
    paired_at: float

    def __post_init__(self) -> None:
        if isinstance(self.addresses, str):  # one address given as a plain string
            object.__setattr__(self, "addresses", (self.addresses,) if self.addresses else ())

    @property
    def address(self) -> str:
        """Where it was last proven to be."""
        return self.addresses[0] if self.addresses else ""

    @property
    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.public_key)

    def to_json(self) -> dict:
        body = asdict(self)
        body["addresses"] = list(self.addresses)
        return body

    @classmethod
    def from_json(cls, item: dict) -> TrustedPeer:
        # "address" (one string) is how 0.1 stored it.
        addresses = item.get("addresses") or ([item["address"]] if item.get("address") else [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ValueError("addresses must be a list of host:port strings")
        return cls(
            str(item["node_id"]),
            clean_name(item.get("name", "")),
            str(item["public_key"]),
            tuple(addresses[:MAX_PROVEN]),
            float(item.get("paired_at", 0.0)),
        )


def remember_proven(addresses: tuple[str, ...], address: str) -> tuple[str, ...]:
    """`address` first, then the others it was proven at, at most MAX_PROVEN (pure)."""
    return (address, *(a for a in addresses if a != address))[:MAX_PROVEN]


class TrustStore:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / TRUST_FILE
        self._peers: dict[str, TrustedPeer] = {}
        if self.path.exists() or self.path.is_symlink():
            for peer in self._load():
                # A record whose id does not match its key was tampered with: ignore it.
                if fingerprint(peer.key_bytes) == peer.node_id:
                    self._peers[peer.node_id] = peer

    def _load(self) -> list[TrustedPeer]:
        try:
            body = json.loads(read_private_file(self.path).decode("utf-8"))
            return [TrustedPeer.from_json(item) for item in body.get("peers", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataFileError(
                f"{self.path} is damaged ({type(exc).__name__}: {exc}). Move it aside (for "
                f"example: mv '{self.path}' '{self.path}.broken') and start again; this node "
                "then trusts no peer, so pair again with each of them"
            ) from exc

    def get(self, node_id: str) -> TrustedPeer | None:
        return self._peers.get(node_id)

    def all(self) -> list[TrustedPeer]:
        return list(self._peers.values())

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._peers

    def add(self, public_key: bytes, name: str, address: str) -> TrustedPeer:
        peer = TrustedPeer(
            fingerprint(public_key), clean_name(name), public_key.hex(), (address,), time.time()
        )
        self._peers[peer.node_id] = peer
        self._save()
        return peer

    def prove_address(self, node_id: str, address: str) -> TrustedPeer | None:
        """A link dialled to `address` passed the signed handshake: remember it first."""
        peer = self._peers.get(node_id)
        if peer is None:
            return None
        addresses = remember_proven(peer.addresses, address)
        if addresses != peer.addresses:
            peer = self._peers[node_id] = replace(peer, addresses=addresses)
            self._save()
        return peer

    def remove(self, node_id: str) -> bool:
        if self._peers.pop(node_id, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        body = {"peers": [p.to_json() for p in self._peers.values()]}
        write_private_file(self.path, json.dumps(body, indent=2).encode())
