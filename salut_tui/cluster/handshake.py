"""The peer link's authenticated key exchange (pure functions; `link_handshake` moves bytes).

Signed ephemeral Diffie-Hellman, the ISO 9798-3 / SIGMA shape:
    I -> R  {I's node id, R's expected node id, I's ephemeral X25519 key}
    R -> I  {R's node id, R's ephemeral key, R's Ed25519 signature over the transcript}
    I -> R  {I's Ed25519 signature over the transcript}
The transcript covers both node ids and both ephemeral keys, and each signature says which role
made it, so a signature cannot be replayed into another session or reflected. Each side checks
the other's signature against the key stored at pairing time: a node that is not in the trust
store never gets past the first message. Two traffic keys (one per direction) come from the
X25519 secret with BLAKE2b and explicit purpose strings; forward secrecy comes from the
ephemeral keys.

Refusal: a responder that no longer trusts a known initiator says so in a signed statement, so a
node unpaired while it was away learns it for sure. That signature is made under its own purpose
string over a digest of the initiator's id, its fresh ephemeral key and the responder's id: it
can never be taken for (or be used to obtain) a handshake signature, whose statements start
with a different purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

from nacl.bindings import crypto_scalarmult
from nacl.public import PrivateKey

from salut_tui.pairing.identity import Identity
from salut_tui.pairing.keys import CryptoFailure, derive_key, transcript_hash, verify_signature

LINK_PROTOCOL = b"salut-link-v1"
REFUSAL_PURPOSE = b"salut-link-v1 refusal: not paired"
INITIATOR = "initiator"
RESPONDER = "responder"


@dataclass(frozen=True, slots=True)
class SessionKeys:
    send: bytes
    receive: bytes


def new_ephemeral() -> PrivateKey:
    return PrivateKey.generate()


def link_transcript(
    initiator_id: str, responder_id: str, initiator_eph: bytes, responder_eph: bytes
) -> bytes:
    return transcript_hash(
        LINK_PROTOCOL, initiator_id.encode(), responder_id.encode(), initiator_eph, responder_eph
    )


def _statement(role: str, transcript: bytes) -> bytes:
    return LINK_PROTOCOL + b" " + role.encode() + b" " + transcript


def sign_transcript(identity: Identity, role: str, transcript: bytes) -> bytes:
    return identity.sign(_statement(role, transcript))


def verify_transcript(public_key: bytes, role: str, transcript: bytes, signature: bytes) -> None:
    verify_signature(public_key, signature, _statement(role, transcript))


def session_keys(
    ephemeral: PrivateKey, their_ephemeral: bytes, transcript: bytes, role: str
) -> SessionKeys:
    """The traffic keys for my side: what I seal with, and what I open with."""
    if len(their_ephemeral) != 32:
        raise CryptoFailure("bad ephemeral key")
    shared = crypto_scalarmult(bytes(ephemeral), their_ephemeral)
    if shared == bytes(32):
        raise CryptoFailure("degenerate ephemeral key")
    i2r = derive_key(shared, "salut link initiator to responder", transcript)
    r2i = derive_key(shared, "salut link responder to initiator", transcript)
    return SessionKeys(i2r, r2i) if role == INITIATOR else SessionKeys(r2i, i2r)


def refusal_statement(initiator_id: str, initiator_eph: bytes, responder_id: str) -> bytes:
    digest = transcript_hash(
        REFUSAL_PURPOSE, initiator_id.encode(), initiator_eph, responder_id.encode()
    )
    return REFUSAL_PURPOSE + b" " + digest


def sign_refusal(identity: Identity, initiator_id: str, initiator_eph: bytes) -> bytes:
    return identity.sign(refusal_statement(initiator_id, initiator_eph, identity.node_id))


def verify_refusal(
    public_key: bytes, initiator_id: str, initiator_eph: bytes, responder_id: str, signature: bytes
) -> None:
    statement = refusal_statement(initiator_id, initiator_eph, responder_id)
    verify_signature(public_key, signature, statement)
