"""Identity, key helpers, codes, the PAKE exchange, the trust store and the failure limiter."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from salut_tui.pairing.codes import WORDS, new_code, normalise_code
from salut_tui.pairing.exchange import (
    Party,
    check_confirm,
    finish_pake,
    make_confirm,
    start_pake,
    transcript,
)
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.keys import CryptoFailure, derive_key, fingerprint, transcript_hash
from salut_tui.pairing.limiter import FailureLimiter
from salut_tui.pairing.machine import Role
from salut_tui.pairing.trust import TrustStore


def test_identity_created_once_with_private_mode(tmp_path: Path) -> None:
    first = Identity.load_or_create(tmp_path)
    key_file = tmp_path / "identity.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = Identity.load_or_create(tmp_path)
    assert again.node_id == first.node_id == fingerprint(first.public_key)
    assert Identity.generate().node_id != first.node_id


def test_derive_key_depends_on_purpose_and_context() -> None:
    secret = b"s" * 32
    a = derive_key(secret, "one", b"ctx")
    assert len(a) == 32
    assert a != derive_key(secret, "two", b"ctx")
    assert a != derive_key(secret, "one", b"other")
    assert a == derive_key(secret, "one", b"ctx")


def test_transcript_hash_is_unambiguous() -> None:
    assert transcript_hash(b"ab", b"c") != transcript_hash(b"a", b"bc")


def test_codes_are_readable_and_normalised() -> None:
    code = new_code()
    number, w1, w2 = code.split("-")
    assert 10 <= int(number) <= 99 and w1 in WORDS and w2 in WORDS
    assert normalise_code(f"  {number} {w1.upper()}  {w2} ") == code
    assert normalise_code("12-notaword-maple") is None
    assert normalise_code("5-maple-mango") is None
    assert normalise_code("maple") is None


def _exchange(
    joiner_code: str, host_code: str
) -> tuple[bytes, bytes, Party, Party, Identity, Identity]:
    joiner_id, host_id = Identity.generate(), Identity.generate()
    jp, hp = start_pake(Role.JOINER, joiner_code), start_pake(Role.HOST, host_code)
    joiner = Party(joiner_id.node_id, "B", joiner_id.public_key, jp.start())
    host = Party(host_id.node_id, "A", host_id.public_key, hp.start())
    return (
        finish_pake(jp, host.pake),
        finish_pake(hp, joiner.pake),
        joiner,
        host,
        joiner_id,
        host_id,
    )


def test_right_code_confirms_both_ways() -> None:
    kj, kh, joiner, host, jid, hid = _exchange("42-maple-rocket", "42-maple-rocket")
    assert kj == kh
    t = transcript(joiner, host)
    check_confirm(make_confirm(jid, Role.JOINER, kj, t), Role.JOINER, jid.public_key, kh, t)
    check_confirm(make_confirm(hid, Role.HOST, kh, t), Role.HOST, hid.public_key, kj, t)


def test_wrong_code_cannot_confirm() -> None:
    kj, kh, joiner, host, jid, _ = _exchange("42-maple-rocket", "42-maple-robot")
    assert kj != kh
    t = transcript(joiner, host)
    with pytest.raises(CryptoFailure):
        check_confirm(make_confirm(jid, Role.JOINER, kj, t), Role.JOINER, jid.public_key, kh, t)


def test_confirm_binds_the_long_term_key_and_the_role() -> None:
    kj, kh, joiner, host, jid, _ = _exchange("10-acid-zebra", "10-acid-zebra")
    t = transcript(joiner, host)
    impostor = Identity.generate()
    with pytest.raises(CryptoFailure):  # signed by another key than the one announced
        check_confirm(
            make_confirm(impostor, Role.JOINER, kj, t), Role.JOINER, jid.public_key, kh, t
        )
    with pytest.raises(CryptoFailure):  # a joiner confirm reflected back as the host's
        check_confirm(make_confirm(jid, Role.JOINER, kj, t), Role.HOST, jid.public_key, kh, t)


def test_trust_store_survives_reload_and_forgets(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    peer_id = Identity.generate()
    added = store.add(peer_id.public_key, "B", "10.0.0.2:7258")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    reloaded = TrustStore(tmp_path)
    assert reloaded.get(added.node_id) == added and added.key_bytes == peer_id.public_key
    reloaded.prove_address(added.node_id, "10.0.0.3:7258")
    again = TrustStore(tmp_path).get(added.node_id)
    assert again is not None and again.addresses == ("10.0.0.3:7258", "10.0.0.2:7258")
    assert again.address == "10.0.0.3:7258"  # the latest proven comes first
    assert reloaded.remove(added.node_id) and added.node_id not in TrustStore(tmp_path)


def test_trust_store_ignores_a_record_whose_id_does_not_match_its_key(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    peer = store.add(Identity.generate().public_key, "B", "h:1")
    store.path.write_text(store.path.read_text().replace(peer.node_id, "0000-0000-0000-0000-0000"))
    assert TrustStore(tmp_path).all() == []


def test_limiter_backs_off_after_repeated_failures() -> None:
    limiter = FailureLimiter(cap=60)
    limiter.record_failure(now=100.0)
    assert limiter.retry_after(now=100.0) == 0  # one mistake is free
    limiter.record_failure(now=100.0)
    assert limiter.retry_after(now=100.0) == 1.0
    limiter.record_failure(now=101.0)
    assert limiter.retry_after(now=101.5) == 1.5
    for _ in range(20):
        limiter.record_failure(now=200.0)
    assert limiter.retry_after(now=200.0) == 60.0
    limiter.record_success()
    assert limiter.retry_after(now=200.0) == 0
