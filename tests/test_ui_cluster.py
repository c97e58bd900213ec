"""The Peers, Pairing and Overview screens on two real cluster nodes in one process.

Each node runs its own `SalutApp` (real server, real pairing protocol over loopback) and lists
the other's address, as on a network without multicast. A person asks A for a code on A's
Pairing screen, picks A among B's discovered nodes and types the code; wrong codes and the rate
limit show as one line; unpairing from A's Peers screen removes trust on both nodes.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable, Input, OptionList, Static

from salut_tui.config import Settings
from salut_tui.node import Node
from salut_tui.pairing.limiter import SourceLimiter
from salut_tui.ui.app import SalutApp
from salut_tui.ui.screens.pairing import PairingScreen
from salut_tui.ui.screens.peers import ConfirmUnpair, PeersScreen
from tests.helpers import free_port, ui_until

CODE = re.compile(r"\b\d{2}-[a-z]+-[a-z]+\b")


def cluster_node(tmp_path: Path, name: str, port: int, other_port: int) -> Node:
    settings = Settings(
        host="127.0.0.1",
        port=port,
        data_dir=str(tmp_path / name),
        node_name=name,
        mode="cluster",
        peers=[f"127.0.0.1:{other_port}"],
    )
    return Node(settings, config_path=tmp_path / f"{name}.toml")


def text_of(app: SalutApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def table_rows(app: SalutApp) -> list[str]:
    """The Peers table as plain text rows: 'mark name address health ...'."""
    table = app.screen.query_one("#peer-table", DataTable)
    if not table.display:
        return []
    return [" ".join(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count)]


async def show_code(pilot: Pilot) -> str:
    """On A's Pairing screen: press c and read the code off the screen."""
    await pilot.press("c")
    await ui_until(pilot, lambda: CODE.search(text_of(pilot.app, "#pair-code")))  # type: ignore[arg-type]
    found = CODE.search(text_of(pilot.app, "#pair-code"))  # type: ignore[arg-type]
    assert found, text_of(pilot.app, "#pair-code")  # type: ignore[arg-type]
    return found.group(0)


async def join_with(pilot: Pilot, host: Node, code: str) -> None:
    """On B's Pairing screen: pick the discovered host, type the code, press enter.

    Other Salut nodes on this machine may show up too (mDNS), so pick the host by its id."""
    app: SalutApp = pilot.app  # type: ignore[assignment]
    screen = app.screen
    assert isinstance(screen, PairingScreen)
    options = screen.query_one("#pair-peers", OptionList)
    options.focus()
    options.highlighted = options.get_option_index(host.cluster.node_id)  # type: ignore[union-attr]
    await pilot.press("enter")
    await ui_until(pilot, lambda: app.focused is screen.query_one("#pair-code-input", Input))
    screen.query_one("#pair-code-input", Input).value = ""
    screen.show_status("")
    await pilot.press(*code)
    await pilot.press("enter")


def notified(app: SalutApp, text: str) -> bool:
    return any(text in n.text for n in app.state.notices.notices)


def notices_with(app: SalutApp, text: str) -> int:
    return sum(text in n.text for n in app.state.notices.notices)


def latest_about(app: SalutApp, name: str) -> str:
    return next((n.text for n in reversed(app.state.notices.notices) if name in n.text), "")


def wrong(code: str) -> str:
    number = int(code[:2])
    return f"{10 if number != 10 else 11}{code[2:]}"


async def test_pair_through_the_screens_then_unpair_from_peers(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    node_a = cluster_node(tmp_path, "alpha", port_a, port_b)
    node_b = cluster_node(tmp_path, "beta", port_b, port_a)
    # A's back-off runs on a clock the test moves: B's 1 s wait must not end before B's retry
    # reaches A, however loaded the machine is.
    now = [time.monotonic()]
    node_a.cluster.pairing.limiter = SourceLimiter(lambda: now[0])  # type: ignore[union-attr]
    app_a, app_b = SalutApp(node_a), SalutApp(node_b)
    async with app_a.run_test(size=(100, 30)) as pa, app_b.run_test(size=(80, 24)) as pb:
        both = [pa, pb]
        await pa.press("6")
        await pb.press("6")
        await ui_until(both, lambda: "No code shown" in text_of(app_a, "#pair-code"))
        await ui_until(both, lambda: isinstance(app_b.screen, PairingScreen))
        # B lists A among the discovered nodes (the listed address is polled every 2 s).
        a_id = node_a.cluster.node_id  # type: ignore[union-attr]
        b_id = node_b.cluster.node_id  # type: ignore[union-attr]
        await ui_until(
            both,
            lambda: (
                a_id in {o.id for o in app_b.screen.query_one("#pair-peers", OptionList).options}
            ),
        )
        option = app_b.screen.query_one("#pair-peers", OptionList).get_option(a_id)
        assert "alpha" in str(option.prompt) and str(port_a) in str(option.prompt)

        # A wrong code: B shows the error on one line, A shows the failure, the code is dead.
        code = await show_code(pa)
        await join_with(pb, node_a, wrong(code))
        await ui_until(both, lambda: "code was wrong" in text_of(app_b, "#pairing-status"))
        assert app_b.screen.query_one("#pairing-status").has_class("error")
        assert "Traceback" not in text_of(app_b, "#pairing-status")
        await ui_until(both, lambda: "failed" in text_of(app_a, "#pair-code"))
        assert code not in text_of(app_a, "#pair-code")
        # B's failed join is told where B typed it, not in B's own "show a code" card.
        assert "failed" not in text_of(app_b, "#pair-code")
        assert "No code shown" in text_of(app_b, "#pair-code")

        # A second wrong code trips the rate limit for the machine that failed (B), which is
        # refused for a moment and says so; A's owner is never locked out of a new code.
        await join_with(pb, node_a, wrong(await show_code(pa)))
        await ui_until(both, lambda: "code was wrong" in text_of(app_b, "#pairing-status"))
        await pb.press("enter")  # at once again, the code still typed in
        await ui_until(
            both, lambda: "too many failed pairings" in text_of(app_b, "#pairing-status")
        )
        await ui_until(both, lambda: node_a.cluster.pairing_status().failures == 2)  # type: ignore[union-attr]
        assert CODE.search(await show_code(pa))
        assert "too many failed pairings" not in text_of(app_a, "#pairing-status")
        assert "2 failed attempt" in text_of(app_a, "#pair-limit")

        # Once B's wait is over, the right code pairs them.
        now[0] += 1.0
        await ui_until(both, lambda: node_a.cluster.pairing_status().retry_after == 0)  # type: ignore[union-attr]
        await join_with(pb, node_a, await show_code(pa))
        await ui_until(both, lambda: "Paired with alpha" in text_of(app_b, "#pairing-status"))
        await ui_until(both, lambda: "Paired with beta" in text_of(app_a, "#pair-code"))
        # A toast on both sides, kept in the notification history.
        await ui_until(both, lambda: notified(app_a, "Paired with beta"))
        await ui_until(both, lambda: notified(app_b, "Paired with alpha"))

        # Both Peers screens show the other as paired and healthy; so does A's Overview.
        await pa.press("5")
        await pb.press("f5")  # its focus is in the code field
        await ui_until(both, lambda: any("beta" in r and "ok" in r for r in table_rows(app_a)))
        await ui_until(both, lambda: any("alpha" in r and "ok" in r for r in table_rows(app_b)))
        assert "●" in table_rows(app_a)[0] and "in flight" in text_of(app_a, "#peer-detail")
        await pa.press("1")
        await ui_until(both, lambda: "1 paired (1 ok)" in text_of(app_a, "#peers-summary"))
        assert "beta" in text_of(app_a, "#peers-summary")

        # Unpair from A's Peers screen: a confirmation, then trust is gone on both nodes.
        await pa.press("5")
        # Paired peers come first: beta is selected.
        await ui_until(both, lambda: b_id in text_of(app_a, "#peer-detail"))
        await pa.press("u")
        await ui_until(both, lambda: isinstance(app_a.screen, ConfirmUnpair))
        await pa.press("y")
        await ui_until(both, lambda: isinstance(app_a.screen, PeersScreen))
        await ui_until(both, lambda: "Unpaired beta" in text_of(app_a, "#peers-status"))
        await ui_until(
            both, lambda: not node_a.cluster.trust.all() and not node_b.cluster.trust.all()
        )  # type: ignore[union-attr]
        # Still listed by address, so each still sees the other, now only discovered.
        await ui_until(
            both, lambda: any("beta" in r and "discovered" in r for r in table_rows(app_a))
        )
        await ui_until(
            both, lambda: any("alpha" in r and "discovered" in r for r in table_rows(app_b))
        )

        # B, on its Peers screen, got a toast; neither Pairing screen still says "Paired with".
        await ui_until(both, lambda: notified(app_b, "Unpaired alpha"))
        await pa.press("6")
        await pb.press("6")
        await ui_until(both, lambda: "Paired with" not in text_of(app_a, "#pair-code"))
        await ui_until(both, lambda: "Paired with" not in text_of(app_b, "#pairing-status"))
        await pb.press("f5")

        # Enter on a discovered node opens Pairing, ready for its code.
        table = app_b.screen.query_one("#peer-table", DataTable)
        table.move_cursor(row=table.get_row_index(a_id))
        await pb.press("enter")
        await ui_until(both, lambda: isinstance(app_b.screen, PairingScreen))
        await ui_until(both, lambda: app_b.screen.is_mounted)
        assert app_b.screen.query_one("#pair-address", Input).value == f"127.0.0.1:{port_a}"
        assert app_b.focused is app_b.screen.query_one("#pair-code-input", Input)


async def test_solo_node_says_there_is_no_cluster(tmp_path: Path) -> None:
    settings = Settings(
        host="127.0.0.1", port=0, data_dir=str(tmp_path / "d"), node_name="solo-node", mode="solo"
    )
    app = SalutApp(Node(settings, config_path=tmp_path / "s.toml"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await ui_until(pilot, lambda: "not running a cluster" in text_of(app, "#pairing-state"))
        assert not app.screen.query_one("#host-card").display
        await pilot.press("c")  # nothing to create a code on: no crash, no change
        await pilot.pause()
        assert text_of(app, "#pairing-status") == ""
        await pilot.press("5")
        await ui_until(pilot, lambda: "No peers" in text_of(app, "#peers-empty"))
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, PeersScreen)
        await pilot.press("1")
        await ui_until(pilot, lambda: "runs on its own" in text_of(app, "#peers-summary"))


async def test_peer_drop_and_return_are_toasts_with_a_history(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    node_a = cluster_node(tmp_path, "alpha", port_a, port_b)
    node_b = cluster_node(tmp_path, "beta", port_b, port_a)
    app_a = SalutApp(node_a, mask_volatile=True)
    async with app_a.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")  # any screen: the toasts come anyway
        await node_b.start()
        try:
            status = node_a.cluster.create_pairing_code()  # type: ignore[union-attr]
            assert status.code is not None
            await node_b.cluster.join(f"127.0.0.1:{port_a}", status.code)  # type: ignore[union-attr]
            await ui_until(pilot, lambda: notified(app_a, "Paired with beta"), 20)
            # Other Salut nodes on this machine may be listed too (mDNS): look beta up by id.
            b_id = node_b.cluster.node_id  # type: ignore[union-attr]
            await ui_until(
                pilot,
                lambda: any(p.id == b_id and p.health == "ok" for p in node_a.cluster_view().peers),
                30,
            )
            # The paired peer gets its own history on the Overview, sampled once a second: its
            # series starts when it pairs and has its memory from the first sample taken while
            # its link is up (a loaded machine may see it down for a while first).
            total = node_b.stats().memory_total
            history = app_a.state.history.nodes
            await ui_until(pilot, lambda: b_id in history and history[b_id].memory_total == total)
            await pilot.press("1")
            await ui_until(
                pilot,
                lambda: any(
                    "peer beta" in str(s.render()) for s in app_a.screen.query(".history-name")
                ),
            )
            await pilot.press("2")
            # A loaded machine may see beta's link drop (and come back) before this: the drop
            # this test waits for is the one after beta stops, once beta is seen up.
            await ui_until(pilot, lambda: "beta dropped" not in latest_about(app_a, "beta"), 30)
            drops = notices_with(app_a, "beta dropped")
        finally:
            await node_b.stop()
        await ui_until(pilot, lambda: notices_with(app_a, "beta dropped") > drops, 30)
        await pilot.press("n")
        await ui_until(pilot, lambda: "beta dropped" in text_of(app_a, "#notification-list"))
        listed = text_of(app_a, "#notification-list")
        assert listed.index("beta dropped") < listed.index("Paired with beta")  # newest first
        assert app_a.state.notices.unread == 0
        await pilot.press("escape")
        await ui_until(pilot, lambda: not app_a.screen.query("#notification-list"))
        assert app_a.current_mode == "models"
