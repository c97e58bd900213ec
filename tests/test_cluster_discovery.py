"""Listed peers (for networks without multicast) and the peer table they feed, plus the CLI's
behaviour when no node is running. Real mDNS between separate network stacks is exercised by
test_multinode.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from salut_tui.cli import main
from salut_tui.cluster.discovery import HELLO_PATH, ManualPeers
from salut_tui.cluster.peers import PeerTable
from tests.helpers import until


def hello_app(body: dict) -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get(HELLO_PATH, hello)
    return app


async def test_listed_peer_appears_and_disappears_like_a_discovered_one(aiohttp_server) -> None:
    b = await aiohttp_server(
        hello_app({"id": "aaaa-bbbb", "name": "B", "version": "0.1.0", "port": 1})
    )
    own = await aiohttp_server(hello_app({"id": "me", "name": "A", "version": "0.1.0", "port": 2}))
    address, own_address = f"127.0.0.1:{b.port}", f"127.0.0.1:{own.port}"
    table = PeerTable()
    events: list[str] = []

    def seen(node_id: str, name: str, addr: str, version: str, source: str) -> None:
        table.upsert(node_id, name, addr, source, version)
        events.append(f"seen {name} {source}")

    def gone(node_id: str, source: str) -> None:
        table.forget_source(node_id, source)
        events.append(f"gone {node_id} {source}")

    async with aiohttp.ClientSession() as session:
        poller = ManualPeers(
            [address, own_address, "127.0.0.1:9"], session, own_id="me", on_seen=seen, on_gone=gone
        )
        task = asyncio.create_task(poller.run())
        try:
            await until(lambda: events, 2.5, what="the listed peer is seen", interval=0.05)
            record = table.get("aaaa-bbbb")
            assert record is not None and record.address == address and record.sources == {"manual"}
            assert record.health == "discovered" and table.get("me") is None  # never itself
            await b.close()  # B goes away
            await until(
                lambda: "gone aaaa-bbbb manual" in events, 4.0, what="B is gone", interval=0.05
            )
            assert events == ["seen B manual", "gone aaaa-bbbb manual"]
            assert table.get("aaaa-bbbb") is None
        finally:
            task.cancel()


def test_peer_table_keeps_paired_peers_when_discovery_loses_them() -> None:
    table = PeerTable()
    b = table.upsert("id-1", "B", "10.0.0.2:7258", "mdns")
    b.paired = True
    table.forget_source("id-1", "mdns")
    assert table.get("id-1") is b and b.health == "connecting"
    b.dial_failed = True
    assert b.health == "unreachable"
    c = table.upsert("id-2", "C", "10.0.0.3:7258", "mdns")
    assert c.health == "discovered" and [p.name for p in table.all()] == ["B", "C"]  # paired first
    assert table.find("C") is c and table.find("id-2") is c
    assert table.find("id-") is None  # ambiguous prefix
    table.forget_source("id-2", "mdns")
    assert table.get("id-2") is None  # unpaired and no longer seen: gone


@pytest.mark.parametrize(
    "argv",
    [
        ["peers"],
        ["pair", "code"],
        ["pair", "join", "10.0.0.2:7258", "42-maple-rocket"],
        ["unpair", "B"],
    ],
)
def test_cluster_commands_explain_when_no_node_runs(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--data-dir", str(tmp_path)]) == 1
    assert "no running node found" in capsys.readouterr().err


async def test_listed_peer_names_are_cleaned_and_huge_answers_ignored(aiohttp_server) -> None:
    """Names are data: an escape sequence in a peer's name never reaches the table (nor
    `salut peers`, `owned_by`, logs, the UI). An answer over MAX_HELLO bytes is not read."""
    from salut_tui.cluster.discovery import MAX_HELLO

    evil = await aiohttp_server(
        hello_app(
            {"id": "aaaa-bbbb", "name": "B\x1b[31m\x1b]0;pwned\x07 red\x1b[0m", "version": "1\x07"}
        )
    )
    huge = await aiohttp_server(
        hello_app({"id": "cccc-dddd", "name": "C", "pad": "x" * (4 * MAX_HELLO)})
    )
    evil_address, huge_address = f"127.0.0.1:{evil.port}", f"127.0.0.1:{huge.port}"
    seen: list[tuple[str, str, str]] = []
    async with aiohttp.ClientSession() as session:
        poller = ManualPeers(
            [evil_address, huge_address], session, own_id="me",
            on_seen=lambda i, n, a, v, s: seen.append((i, n, v)), on_gone=lambda i, s: None,
        )  # fmt: skip
        await poller._poll(evil_address)
        await poller._poll(huge_address)
    assert seen == [("aaaa-bbbb", "B red", "1")]


def test_peer_state_enters_as_data() -> None:
    from salut_tui.cluster.peers import clean_state

    state = clean_state(
        {
            "loaded_models": ["tiny-b", "evil\x1b[2J", 7, ""],
            "available_models": "not a list",
            "requests_in_flight": "lots",
            "queued": 2,
            "vram_free": -1,
            "mode": "cluster\x1b[31m",
            "extra": "dropped",
        }
    )
    assert state == {
        "loaded_models": ["tiny-b"],
        "available_models": [],
        "queued": 2,
        "mode": "cluster",
    }
    assert clean_state(["not", "a", "dict"]) == {}


def test_announcements_add_candidates_but_never_rename_or_move_a_paired_peer() -> None:
    table = PeerTable()
    b = table.upsert("id-1", "B", "10.0.0.2:7258", "trust")
    b.paired = True
    table.upsert("id-1", "rogue", "10.0.0.66:7258", "mdns")
    assert (b.name, b.address, b.candidates) == ("B", "10.0.0.2:7258", ("10.0.0.66:7258",))
    c = table.upsert("id-2", "C", "10.0.0.3:7258", "mdns")
    table.upsert("id-2", "C2", "10.0.0.4:7258", "mdns")  # unpaired: the latest word is all
    assert (c.name, c.address) == ("C2", "10.0.0.4:7258")
