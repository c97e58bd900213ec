"""The cryptographic content of the pairing messages (pure: no sockets, no state).

SPAKE2 turns the short code into a strong shared key that a listener cannot test offline.
Both long-term Ed25519 keys are bound in: each side signs a transcript that covers both SPAKE2
messages, both public keys, both names and both API ports (where the host will dial the joiner
back, so a relay cannot redirect it), and seals that signature with a key derived from the
PAKE secret. Only someone who knew the code can unseal it, and only the holder of the announced
identity key can have signed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from spake2 import SPAKE2_A, SPAKE2_B, SPAKEError

from salut_tui.pairing.identity import Identity
from salut_tui.pairing.keys import (
    CryptoFailure,
    derive_key,
    seal,
    transcript_hash,
    unseal,
    verify_signature,
)
from salut_tui.pairing.machine import Role
from salut_tui.pairing.names import clean_name

PROTOCOL = b"salut-pair-v2"  # v2: the API ports are in the transcript
_IDS = {"idA": b"salut-joiner", "idB": b"salut-host"}


@dataclass(frozen=True, slots=True)
class Party:
    """What one side announces: who it is, where its API listens, and its PAKE message."""

    node_id: str
    name: str
    public_key: bytes
    pake: bytes
    port: int = 0  # its API (and peer link) port

    def to_json(self) -> dict:
        return {
            "node_id": self.node_id,
            "name": self.name,
            "public_key": self.public_key.hex(),
            "pake": self.pake.hex(),
            "port": self.port,
        }

    @classmethod
    def from_json(cls, body: dict) -> Party:
        try:
            port = int(body["port"])
            party = cls(
                str(body["node_id"]),
                clean_name(body["name"]),
                bytes.fromhex(body["public_key"]),
                bytes.fromhex(body["pake"]),
                port,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CryptoFailure("malformed pairing message") from exc
        if not 0 < port < 65536:
            raise CryptoFailure("malformed pairing message (port)")
        return party


def start_pake(role: Role, code: str) -> SPAKE2_A | SPAKE2_B:
    cls = SPAKE2_A if role is Role.JOINER else SPAKE2_B
    return cls(code.encode(), **_IDS)


def finish_pake(pake: SPAKE2_A | SPAKE2_B, their_message: bytes) -> bytes:
    try:
        return pake.finish(their_message)
    except (SPAKEError, ValueError) as exc:
        raise CryptoFailure("bad PAKE message") from exc


def transcript(joiner: Party, host: Party) -> bytes:
    return transcript_hash(
        PROTOCOL,
        joiner.pake, host.pake,
        joiner.public_key, host.public_key,
        joiner.name.encode(), host.name.encode(),
        joiner.port.to_bytes(2, "big"), host.port.to_bytes(2, "big"),
    )  # fmt: skip


def _confirm_key(shared: bytes, role: Role, transcript_digest: bytes) -> bytes:
    return derive_key(shared, f"salut pair confirm {role.value}", transcript_digest)


def _signed_statement(role: Role, transcript_digest: bytes) -> bytes:
    return PROTOCOL + b" " + role.value.encode() + b" " + transcript_digest


def make_confirm(identity: Identity, role: Role, shared: bytes, transcript_digest: bytes) -> bytes:
    """My confirmation: my signature over the transcript, sealed under my role's PAKE key."""
    signature = identity.sign(_signed_statement(role, transcript_digest))
    return seal(_confirm_key(shared, role, transcript_digest), signature)


def check_confirm(
    sealed: bytes, sender_role: Role, sender_key: bytes, shared: bytes, transcript_digest: bytes
) -> None:
    """Raise CryptoFailure unless the sender knew the code and holds `sender_key`."""
    signature = unseal(_confirm_key(shared, sender_role, transcript_digest), sealed)
    verify_signature(sender_key, signature, _signed_statement(sender_role, transcript_digest))
