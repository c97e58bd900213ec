"""Keys, proofs and record sealing for the bulk path of a model copy (pure; `bulk.py` moves the
bytes).

The peer link carries the control of a copy (manifest, which pieces, verification); the bytes of
a piece travel on a plain HTTP connection to the sender, in large records sealed with
AES-256-GCM, because the link's 16 KiB frames sealed one by one on the event loop cap a copy at
a few hundred MB/s. What ties that connection to the link:

- The sender issues a one-time *ticket* over the link for exactly one byte range of one file:
  16 random bytes, sent only inside the encrypted link.
- Both ends derive the ticket's keys with HKDF-SHA256 from the link's exporter secret (known to
  both ends of that session only, see `FrameCipher.exporter`), salted with the ticket, under
  explicit purpose strings: one key seals the records, one proves the request. Neither key ever
  travels, and every ticket gets keys of its own.
- The puller presents the ticket with an HMAC proof; the sender refuses (before reading or
  allocating anything) a ticket it does not know, one expired or already used, and a proof that
  was not made with its link to that peer.
- Record `i` of a range is sealed with nonce `i` (unique: one key per ticket) and the AAD binds
  the ticket, the file name, the range and the record's index and count, so a record cannot be
  reordered, replayed into another range or file, or the stream cut short without failing.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from salut_tui.pairing.keys import CryptoFailure

BULK_PROTOCOL = b"salut-bulk-v1"
RECORD_PURPOSE = BULK_PROTOCOL + b" record key, sender to puller"
PROOF_PURPOSE = BULK_PROTOCOL + b" request proof key, puller to sender"
TICKET_BYTES = 16
TAG_BYTES = 16
RECORD_SIZE = 4 * 1024 * 1024  # plaintext bytes per record (the last one of a range is shorter)
_AAD = struct.Struct(">QQQQ")  # range offset, range length, record index, record count


def _hkdf(secret: bytes, ticket: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ticket, info=purpose).derive(secret)


@dataclass(frozen=True, slots=True)
class TicketKeys:
    record: bytes  # AES-256-GCM key of the records
    proof: bytes  # HMAC-SHA256 key of the request proof


def ticket_keys(link_secret: bytes, ticket: bytes) -> TicketKeys:
    """The keys of one ticket, from the link's exporter secret (the same on both ends)."""
    if len(ticket) != TICKET_BYTES:
        raise CryptoFailure("a bulk ticket has 16 bytes")
    return TicketKeys(
        _hkdf(link_secret, ticket, RECORD_PURPOSE), _hkdf(link_secret, ticket, PROOF_PURPOSE)
    )


def request_proof(keys: TicketKeys, ticket: bytes) -> bytes:
    """What the puller shows with the ticket: only an end of that link can make it."""
    return hmac.new(keys.proof, BULK_PROTOCOL + b" request " + ticket, hashlib.sha256).digest()


def proof_ok(keys: TicketKeys, ticket: bytes, proof: bytes) -> bool:
    return hmac.compare_digest(request_proof(keys, ticket), proof)


def record_spans(length: int, record_size: int = RECORD_SIZE) -> list[tuple[int, int]]:
    """(offset within the range, plaintext length) of each record of a range of `length`."""
    return [(at, min(record_size, length - at)) for at in range(0, length, record_size)]


def sealed_length(length: int, record_size: int = RECORD_SIZE) -> int:
    """Bytes on the wire for a range of `length` plaintext bytes."""
    return length + TAG_BYTES * len(record_spans(length, record_size))


class RangeSealer:
    """Seals (sender) or opens (puller) the records of one ticket's byte range."""

    def __init__(
        self,
        keys: TicketKeys,
        ticket: bytes,
        name: str,
        offset: int,
        length: int,
        record_size: int = RECORD_SIZE,
    ) -> None:
        self._aead = AESGCM(keys.record)
        self.spans = record_spans(length, record_size)
        self._prefix = b"%s\0%s\0%s\0" % (BULK_PROTOCOL, ticket, name.encode())
        self._range = (offset, length)

    def _nonce_and_aad(self, index: int) -> tuple[bytes, bytes]:
        if not 0 <= index < len(self.spans):
            raise CryptoFailure(f"record {index} is not part of this range")
        aad = self._prefix + _AAD.pack(*self._range, index, len(self.spans))
        return index.to_bytes(12, "big"), aad

    def seal(self, index: int, plaintext: bytes) -> bytes:
        if len(plaintext) != self.spans[index][1]:
            raise ValueError(f"record {index} must hold {self.spans[index][1]} bytes")
        nonce, aad = self._nonce_and_aad(index)
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, index: int, sealed: bytes) -> bytes:
        """Record `index`'s plaintext; CryptoFailure when it is not exactly what the sender
        sealed as that record of this range under this ticket."""
        nonce, aad = self._nonce_and_aad(index)
        if len(sealed) != self.spans[index][1] + TAG_BYTES:
            raise CryptoFailure(f"record {index} has the wrong length")
        try:
            return self._aead.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise CryptoFailure(
                f"record {index} failed authentication (tampered, reordered or wrong key)"
            ) from None
