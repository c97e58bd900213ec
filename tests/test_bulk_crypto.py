"""The bulk path's pure parts: ticket keys, request proofs, record sealing (bulk_crypto.py), the
sender's one-time tickets (bulk_tickets.py), and the link exporter both ends derive them from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from salut_tui.cluster.bulk_crypto import (
    TAG_BYTES,
    RangeSealer,
    TicketKeys,
    proof_ok,
    record_spans,
    request_proof,
    sealed_length,
    ticket_keys,
)
from salut_tui.cluster.bulk_tickets import TicketRefused, TicketTable
from salut_tui.cluster.frames import FrameCipher
from salut_tui.pairing.keys import CryptoFailure

SECRET = b"s" * 32
TICKET = b"t" * 16
RECORD = 1000  # small records, so a range has several


def sealer(
    keys: TicketKeys | None = None,
    ticket: bytes = TICKET,
    name: str = "model.safetensors",
    offset: int = 8192,
    length: int = 2500,
) -> RangeSealer:
    return RangeSealer(keys or ticket_keys(SECRET, ticket), ticket, name, offset, length, RECORD)


def sealed_records(data: bytes) -> list[bytes]:
    out = sealer()
    return [out.seal(i, data[at : at + size]) for i, (at, size) in enumerate(out.spans)]


DATA = os.urandom(2500)


def test_records_cover_the_range_and_open_to_the_same_bytes() -> None:
    assert record_spans(2500, RECORD) == [(0, 1000), (1000, 1000), (2000, 500)]
    assert record_spans(0, RECORD) == []
    assert sealed_length(2500, RECORD) == 2500 + 3 * TAG_BYTES
    records = sealed_records(DATA)
    assert [len(r) for r in records] == [1016, 1016, 516]
    opener = sealer()
    assert b"".join(opener.open(i, r) for i, r in enumerate(records)) == DATA


def test_a_tampered_record_fails() -> None:
    records = sealed_records(DATA)
    for at in (0, 500, len(records[1]) - 1):  # ciphertext and tag alike
        bad = bytearray(records[1])
        bad[at] ^= 1
        with pytest.raises(CryptoFailure, match="failed authentication"):
            sealer().open(1, bytes(bad))


def test_records_cannot_be_reordered_replayed_or_cut() -> None:
    records = sealed_records(DATA)
    opener = sealer()
    with pytest.raises(CryptoFailure):
        opener.open(0, records[1])  # the same length, the wrong place
    with pytest.raises(CryptoFailure, match="wrong length"):
        opener.open(2, records[1])
    with pytest.raises(CryptoFailure, match="wrong length"):
        opener.open(1, records[1][:-1])  # truncated
    with pytest.raises(CryptoFailure, match="not part of this range"):
        opener.open(3, records[2])  # one record more than the range has


@pytest.mark.parametrize(
    "other",
    [
        {"ticket": b"u" * 16},  # another ticket (so other keys)
        {"keys": ticket_keys(b"x" * 32, TICKET)},  # another link session: another peer
        {"name": "other.safetensors"},  # the same range of another file
        {"offset": 0},  # another range of the same file
        {"length": 3000},  # a range that goes on
    ],
)
def test_a_record_opens_only_in_its_own_ticket_file_and_range(other: dict) -> None:
    records = sealed_records(DATA)
    with pytest.raises(CryptoFailure):
        sealer(**other).open(0, records[0])


def test_keys_are_per_ticket_and_per_purpose_and_the_proof_needs_them() -> None:
    keys = ticket_keys(SECRET, TICKET)
    assert keys.record != keys.proof
    assert ticket_keys(SECRET, TICKET) == keys  # both ends derive the same
    assert ticket_keys(SECRET, b"u" * 16).record != keys.record
    assert ticket_keys(b"x" * 32, TICKET).proof != keys.proof
    proof = request_proof(keys, TICKET)
    assert proof_ok(keys, TICKET, proof)
    assert not proof_ok(ticket_keys(b"x" * 32, TICKET), TICKET, proof)
    assert not proof_ok(keys, TICKET, proof[:-1] + bytes([proof[-1] ^ 1]))
    with pytest.raises(CryptoFailure):
        ticket_keys(SECRET, b"short")


def test_both_ends_of_a_link_export_the_same_secret_and_no_one_else() -> None:
    k1, k2, k3 = (os.urandom(32) for _ in range(3))
    mine, theirs = FrameCipher(k1, k2), FrameCipher(k2, k1)
    assert mine.exporter() == theirs.exporter()
    assert mine.exporter() not in (k1, k2)
    assert FrameCipher(k1, k3).exporter() != mine.exporter()


# ---- tickets ---------------------------------------------------------------------------------
def issue(table: TicketTable, peer: str = "peer-a", now: float = 0.0, secret: bytes = SECRET):  # type: ignore[no-untyped-def]
    return table.issue(
        peer_id=peer, link_secret=secret, path=Path("/m/model.safetensors"),
        name="model.safetensors", offset=0, length=10, now=now,
    )  # fmt: skip


def present(ticket, secret: bytes = SECRET) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    proof = request_proof(ticket_keys(secret, ticket.ticket), ticket.ticket)
    return ticket.ticket.hex(), proof.hex()


def test_a_ticket_is_redeemed_once() -> None:
    table = TicketTable(ttl=30)
    ticket = issue(table)
    assert table.redeem(*present(ticket), now=1.0) == ticket
    with pytest.raises(TicketRefused, match="spent"):
        table.redeem(*present(ticket), now=1.0)
    assert len(table) == 0


def test_unknown_expired_and_malformed_tickets_are_refused() -> None:
    table = TicketTable(ttl=30)
    forged = issue(TicketTable())  # valid-looking, issued elsewhere
    with pytest.raises(TicketRefused, match="unknown"):
        table.redeem(*present(forged), now=0.0)
    late = issue(table, now=0.0)
    with pytest.raises(TicketRefused, match="expired"):
        table.redeem(*present(late), now=30.0)
    with pytest.raises(TicketRefused, match="malformed"):
        table.redeem("zz", "00", now=0.0)


def test_a_ticket_shown_without_its_links_proof_is_refused_and_spent() -> None:
    table = TicketTable()
    ticket = issue(table, peer="peer-a", secret=SECRET)
    # Someone who saw the ticket but holds another link's secret (another peer).
    with pytest.raises(TicketRefused, match="proof"):
        table.redeem(*present(ticket, secret=b"x" * 32), now=0.0)
    with pytest.raises(TicketRefused, match="spent"):  # and the real one cannot use it now
        table.redeem(*present(ticket), now=0.0)


def test_unspent_tickets_are_bounded_per_peer_and_go_with_an_unpairing() -> None:
    table = TicketTable(max_open=2)
    issue(table, "peer-a"), issue(table, "peer-a")
    with pytest.raises(TicketRefused, match="too many"):
        issue(table, "peer-a")
    kept = issue(table, "peer-b")
    table.forget_peer("peer-a")
    assert len(table) == 1
    assert table.redeem(*present(kept), now=0.0) == kept
    issue(table, "peer-a", now=100.0)  # room again; expired ones do not count either
