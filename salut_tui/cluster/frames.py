"""Peer link frames: a 5-byte header and a payload, sealed as one SecretBox message.

No websocket message on the link is large (see `MAX_WIRE_MESSAGE`): a frame bigger than one
piece travels as PART frames and a final PART_END whose payloads, joined, are the encoded frame.

Each direction has its own key and a message counter used as the nonce. The counter is never
sent: the websocket delivers in order, so both ends know the next number, and a replayed,
dropped, reordered or forged frame fails authentication and ends the link. Overhead per frame
is 16 bytes of MAC plus the header.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from nacl.bindings import crypto_secretbox, crypto_secretbox_open
from nacl.exceptions import CryptoError

from salut_tui.pairing.keys import CryptoFailure, derive_key

_HEADER = struct.Struct(">BI")


class Kind(IntEnum):
    OPEN = 1  # start a stream: JSON {"method": ..., "body": ...}
    DATA = 2  # one payload on a stream
    END = 3  # the stream finished normally
    ERROR = 4  # the stream failed: JSON {"message", "type", "code", "status"}
    CANCEL = 5  # the opener gave up on the stream
    PING = 6  # stream 0: payload echoed back in a PONG
    PONG = 7
    STATE = 8  # stream 0: the sender's node state (JSON), about once a second
    NOTICE = 9  # stream 0: one-off JSON notices ({"unpaired": true})
    TUNNEL = 10  # open a byte tunnel: JSON {"method", "body", "window"} (see tunnel.py)
    CREDIT = 11  # a tunnel's receiver grants more bytes: 4-byte big-endian count
    # Pieces of one large frame, sent back to back (numbered apart from the stream kinds).
    PART = 30  # stream 0: a piece, more follow
    PART_END = 31  # stream 0: the last piece


# The largest websocket message either end reads, before and after the handshake: reading stays
# cheap whoever sends. Frames above PIECE bytes are split (one piece + header + MAC fits).
MAX_WIRE_MESSAGE = 16 * 1024
PIECE = MAX_WIRE_MESSAGE - 64
MAX_FRAME = 64 * 1024 * 1024  # the largest frame a paired peer may send, once reassembled


def encode(kind: Kind, stream: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, stream) + payload


def decode(frame: bytes) -> tuple[Kind, int, bytes]:
    if len(frame) < _HEADER.size:
        raise CryptoFailure("short frame")
    kind, stream = _HEADER.unpack_from(frame)
    try:
        return Kind(kind), stream, frame[_HEADER.size :]
    except ValueError as exc:
        raise CryptoFailure(f"unknown frame kind {kind}") from exc


class FrameCipher:
    """Seals outgoing and opens incoming frames with per-direction keys and counters."""

    def __init__(self, send_key: bytes, receive_key: bytes) -> None:
        self._send_key = send_key
        self._receive_key = receive_key
        self._sent = 0
        self._received = 0

    def exporter(self) -> bytes:
        """A secret both ends of this link session share, to key another channel tied to it
        (the bulk path of a model copy, see bulk_crypto.py): derived from the two traffic keys
        in a fixed order under its own purpose, so it reveals nothing about them."""
        low, high = sorted((self._send_key, self._receive_key))
        return derive_key(low + high, "salut link exporter")

    def seal(self, plaintext: bytes) -> bytes:
        nonce = self._sent.to_bytes(24, "little")
        self._sent += 1
        return crypto_secretbox(plaintext, nonce, self._send_key)

    def open(self, ciphertext: bytes) -> bytes:
        nonce = self._received.to_bytes(24, "little")
        try:
            plaintext = crypto_secretbox_open(ciphertext, nonce, self._receive_key)
        except (CryptoError, ValueError) as exc:
            raise CryptoFailure(
                "frame failed authentication (forged, replayed or reordered)"
            ) from exc
        self._received += 1
        return plaintext


def split(frame: bytes) -> list[bytes]:
    """The encoded frames to seal and send for `frame` (itself when it fits one piece)."""
    if len(frame) <= PIECE:
        return [frame]
    if len(frame) > MAX_FRAME:
        raise ValueError(f"frame of {len(frame)} bytes is over the {MAX_FRAME} limit")
    pieces = [frame[i : i + PIECE] for i in range(0, len(frame), PIECE)]
    return [encode(Kind.PART, 0, p) for p in pieces[:-1]] + [encode(Kind.PART_END, 0, pieces[-1])]


class Reassembler:
    """Joins PART pieces back into the frame they carried."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, kind: Kind, payload: bytes) -> bytes | None:
        """The whole encoded frame after its PART_END, else None."""
        self._size += len(payload)
        if self._size > MAX_FRAME:
            raise CryptoFailure(f"a frame of more than {MAX_FRAME} bytes")
        self._parts.append(payload)
        if kind is Kind.PART:
            return None
        frame = b"".join(self._parts)
        self._parts, self._size = [], 0
        return frame
