"""Small, pure crypto helpers shared by pairing and the peer link.

Everything is libsodium through PyNaCl: BLAKE2b for hashing and key derivation (with an explicit
purpose string as the personalisation, so a key derived for one job can never be mistaken for
another), Ed25519 for signatures, XSalsa20-Poly1305 (SecretBox) for sealing.
"""

from __future__ import annotations

import hashlib

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.secret import SecretBox
from nacl.signing import VerifyKey

KEY_BYTES = 32


class CryptoFailure(Exception):
    """A signature or a sealed message did not verify."""


def fingerprint(public_key: bytes) -> str:
    """The node id: a short, stable, printable digest of an Ed25519 public key."""
    digest = hashlib.blake2b(public_key, digest_size=10, person=b"salut-node-id").hexdigest()
    return "-".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def derive_key(secret: bytes, purpose: str, context: bytes = b"") -> bytes:
    """A 32-byte key for one purpose, from a shared secret and a transcript/context digest."""
    person = hashlib.blake2b(purpose.encode(), digest_size=16).digest()
    return hashlib.blake2b(context, key=secret, digest_size=KEY_BYTES, person=person).digest()


def transcript_hash(*parts: bytes) -> bytes:
    """An unambiguous digest of several byte strings (each one is length-prefixed)."""
    h = hashlib.blake2b(digest_size=32, person=b"salut-transcrpt")
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> None:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError) as exc:
        raise CryptoFailure("bad signature") from exc


def seal(key: bytes, plaintext: bytes) -> bytes:
    """Encrypt and authenticate with a random nonce (for one-off messages, not the link)."""
    return bytes(SecretBox(key).encrypt(plaintext))


def unseal(key: bytes, sealed: bytes) -> bytes:
    try:
        return SecretBox(key).decrypt(sealed)
    except (CryptoError, ValueError) as exc:
        raise CryptoFailure("sealed message did not authenticate") from exc
