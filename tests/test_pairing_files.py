"""Hardening of what pairing keeps and signs: the port inside the signed transcript, the
`not_paired` refusal under its own purpose, private files (atomic, O_EXCL/O_NOFOLLOW, 0600 in a
0700 dir), a readable identity key fixed with a warning, a damaged trust store explained, names
from other machines cleaned, and the per-source limiter."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from salut_tui.cluster.handshake import (
    RESPONDER,
    link_transcript,
    new_ephemeral,
    sign_refusal,
    sign_transcript,
    verify_refusal,
    verify_transcript,
)
from salut_tui.pairing.exchange import (
    Party,
    check_confirm,
    finish_pake,
    make_confirm,
    start_pake,
    transcript,
)
from salut_tui.pairing.files import DataFileError, ensure_private_dir, write_private_file
from salut_tui.pairing.identity import Identity
from salut_tui.pairing.keys import CryptoFailure
from salut_tui.pairing.limiter import SourceLimiter
from salut_tui.pairing.machine import Role
from salut_tui.pairing.names import clean_name
from salut_tui.pairing.trust import TrustStore


def test_the_joiners_port_is_inside_the_signed_transcript() -> None:
    """A relay that rewrites the port of the hello (where the host will dial the joiner back)
    breaks the joiner's confirm: the host would otherwise trust a redirected address."""
    jid, hid = Identity.generate(), Identity.generate()
    jp, hp = start_pake(Role.JOINER, "42-maple-rocket"), start_pake(Role.HOST, "42-maple-rocket")
    joiner = Party(jid.node_id, "B", jid.public_key, jp.start(), 7258)
    host = Party(hid.node_id, "A", hid.public_key, hp.start(), 7258)
    kj, kh = finish_pake(jp, host.pake), finish_pake(hp, joiner.pake)
    sealed = make_confirm(jid, Role.JOINER, kj, transcript(joiner, host))
    check_confirm(sealed, Role.JOINER, jid.public_key, kh, transcript(joiner, host))
    rewritten = Party.from_json({**joiner.to_json(), "port": 6666})
    with pytest.raises(CryptoFailure):
        check_confirm(sealed, Role.JOINER, jid.public_key, kh, transcript(rewritten, host))
    with pytest.raises(CryptoFailure):  # and a hello without a sane port is malformed
        Party.from_json({**joiner.to_json(), "port": 0})


def test_refusal_signs_under_its_own_purpose() -> None:
    """The `not_paired` refusal signs bytes the caller chose (its id and ephemeral key): under
    its own purpose string, so it is never a handshake signature and vice versa."""
    responder, initiator = Identity.generate(), Identity.generate()
    eph = bytes(new_ephemeral().public_key)
    refusal = sign_refusal(responder, initiator.node_id, eph)
    verify_refusal(responder.public_key, initiator.node_id, eph, responder.node_id, refusal)
    with pytest.raises(CryptoFailure):  # bound to the caller's fresh key: no replay
        verify_refusal(
            responder.public_key,
            initiator.node_id,
            bytes(new_ephemeral().public_key),
            responder.node_id,
            refusal,
        )
    t = link_transcript(initiator.node_id, responder.node_id, eph, bytes(32))
    with pytest.raises(CryptoFailure):
        verify_transcript(responder.public_key, RESPONDER, t, refusal)
    handshake = sign_transcript(responder, RESPONDER, t)
    with pytest.raises(CryptoFailure):
        verify_refusal(responder.public_key, initiator.node_id, eph, responder.node_id, handshake)


def test_private_files_are_0600_in_a_0700_dir_and_never_follow_a_planted_link(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    # 0.1 wrote through a predictable temp name: a link planted there redirected the write.
    for pid in range(os.getpid() - 2, os.getpid() + 3):
        (data / f".trusted_peers.json.{pid}.tmp").symlink_to(victim)
    target = data / "trusted_peers.json"
    write_private_file(target, b"{}")
    assert victim.read_bytes() == b"untouched"
    assert target.read_bytes() == b"{}" and not target.is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert not [p for p in data.iterdir() if p.name.startswith(".") and not p.is_symlink()]
    fresh = tmp_path / "new" / "dir"
    ensure_private_dir(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_a_readable_identity_key_is_fixed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = Identity.load_or_create(tmp_path)
    key = tmp_path / "identity.key"
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        again = Identity.load_or_create(tmp_path)
    assert again.node_id == first.node_id
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "readable by group or others" in caplog.text and "0600" in caplog.text


def test_a_symlinked_or_truncated_identity_key_is_refused_with_a_reason(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.key"
    real.write_bytes(bytes(32))
    (tmp_path / "identity.key").symlink_to(real)
    with pytest.raises(DataFileError, match=r"identity\.key"):
        Identity.load_or_create(tmp_path)
    (tmp_path / "identity.key").unlink()
    (tmp_path / "identity.key").write_bytes(b"short")
    with pytest.raises(DataFileError, match="move it aside"):
        Identity.load_or_create(tmp_path)


@pytest.mark.parametrize("content", ["{not json", '{"peers": [{"node_id": 1}]}', "[]", "\xff"])
def test_a_damaged_trust_store_names_the_file_and_what_to_do(tmp_path: Path, content: str) -> None:
    path = tmp_path / "trusted_peers.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(DataFileError) as damaged:
        TrustStore(tmp_path)
    assert str(path) in str(damaged.value) and "Move it aside" in str(damaged.value)


def test_salut_serve_explains_a_damaged_trust_store_without_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "trusted_peers.json").write_text('{"peers": [')
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    run = subprocess.run(
        [sys.executable, "-m", "salut_tui", "serve", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert run.returncode != 0
    assert "trusted_peers.json" in run.stderr and "Move it aside" in run.stderr
    assert "Traceback" not in run.stderr


def test_trust_store_reads_the_01_format(tmp_path: Path) -> None:
    peer = Identity.generate()
    store = TrustStore(tmp_path)
    added = store.add(peer.public_key, "B", "10.0.0.2:7258")
    old = {"peers": [{**added.to_json(), "address": "10.0.0.2:7258"}]}
    del old["peers"][0]["addresses"]
    store.path.write_text(json.dumps(old))
    assert TrustStore(tmp_path).get(added.node_id) == added


def test_names_from_other_machines_are_cleaned() -> None:
    assert clean_name("B\x1b[31m red\x1b[0m") == "B red"
    assert clean_name("\x1b]0;pwned\x07node") == "node"  # an OSC window-title sequence
    assert clean_name("a\u202eevil\x07\x00b\n c") == "aevilb c"  # bidi override, BEL, NUL
    assert clean_name("x" * 500) == "x" * 64
    assert clean_name("café ☕") == "café ☕"


def test_source_limiter_keys_on_the_source_and_stays_bounded() -> None:
    now = [100.0]
    limiter = SourceLimiter(lambda: now[0], max_sources=3)
    for _ in range(3):
        limiter.record_failure("10.0.0.9")
    assert limiter.retry_after("10.0.0.9") == 2.0 and limiter.retry_after("10.0.0.2") == 0
    limiter.record_failure("10.0.0.2")
    assert limiter.retry_after("10.0.0.2") == 0  # one mistake is free
    for n in range(5):
        limiter.record_failure(f"10.0.1.{n}")
    assert limiter.failures() == 3  # the oldest sources went first
    now[0] += 10_000
    assert limiter.failures() == 0  # and quiet ones are forgotten
