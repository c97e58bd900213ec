"""Peers: the other nodes this one knows (paired first, then discovered), their health and load.

Enter on a discovered node opens Pairing with its address filled in; u unpairs a paired one
after a confirmation. Health is worked out when read (a peer whose state stops arriving turns
"connecting"/"unreachable" without an event), so the table is also redrawn once a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from rich.markup import escape
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import DataTable, Static

from salut_tui.ui.format import one_line
from salut_tui.ui.messages import Topic
from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.screens.pairing import PairingScreen
from salut_tui.views import PeerView

log = logging.getLogger(__name__)

COLUMNS = ("", "Name", "Address", "Health", "Latency", "Models")
STATUS_SECONDS = 8.0
HEALTH_STYLE = {"ok": "green", "connecting": "yellow", "unreachable": "red", "discovered": "dim"}


def health_markup(health: str) -> str:
    style = HEALTH_STYLE.get(health)
    return f"[{style}]{escape(health)}[/]" if style else escape(health)


class ConfirmUnpair(ModalScreen[bool]):
    """y unpairs, n or escape keeps the pairing."""

    BINDINGS = [
        Binding("y", "answer(True)", "Unpair"),
        Binding("n,escape", "answer(False)", "Keep"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self._peer_name = name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-unpair"):
            yield Static(
                f"Unpair [b]{escape(self._peer_name)}[/]? Both nodes forget each other's key and "
                "stop sharing models; pairing again needs a new code.\n\n"
                "[b]y[/] unpair · [b]n[/] / [b]esc[/] keep"
            )

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PeersScreen(NodeScreen):
    SCREEN_TITLE = "Peers"
    HINT = "enter pair a discovered node · u unpair · ↑↓ select · 6 pairing"
    TOPICS = frozenset({"peers"})
    BINDINGS = [
        Binding("u", "unpair", "Unpair", show=False),
        Binding("p", "pair", "Pair", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._peers: dict[str, PeerView] = {}  # node id -> the peer, as drawn
        self._status_timer: Timer | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="peers"):
            yield Static("", id="peers-empty")
            table: DataTable = DataTable(id="peer-table", cursor_type="row")
            table.add_columns(*COLUMNS)
            yield table
            yield Static("", id="peer-detail")
            yield Static("", id="peers-status")

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Pair with peer", "Open Pairing for the selected discovered node", self.action_pair
        )
        yield SystemCommand(
            "Unpair peer", "Remove trust with the selected paired node", self.action_unpair
        )

    # ---- drawing -----------------------------------------------------------------------
    def redraw(self, topics: set[Topic]) -> None:
        if not self.is_mounted:
            return  # the app shows a mode's screen (and ticks it) before it is composed
        peers = self.node.cluster_view().peers
        self._peers = {p.id: p for p in peers}
        table = self.query_one("#peer-table", DataTable)
        selected = self.selected()
        table.clear()
        for peer in peers:
            table.add_row(*self._cells(peer), key=peer.id)
        if selected is not None and selected.id in table.rows:
            table.move_cursor(row=table.get_row_index(selected.id))
        table.display = bool(peers)
        self.query_one("#peer-detail").display = bool(peers)
        self.query_one("#hint").display = self.node.cluster is not None  # no keys apply in solo
        empty = self.query_one("#peers-empty", Static)
        empty.display = not peers
        if self.node.cluster is None:
            empty.update(
                "No peers. This node runs on its own: "
                f"mode is [b]{escape(self.node.settings.mode)}[/] and no cluster is running."
            )
        else:
            empty.update(
                "No peers yet. Other Salut nodes on this network appear here; 6 pairs one."
            )
        self._draw_detail()

    def tick(self) -> None:
        if self.node.cluster is not None:
            self.redraw({"peers"})

    def _cells(self, peer: PeerView) -> tuple[str, ...]:
        # Narrow enough for 80 columns; load, rates and memory are in the detail lines below.
        latency = peer.latency_ms
        models = peer.loaded_models
        return (
            "[green]●[/]" if peer.paired else "[dim]○[/]",
            escape(one_line(peer.name or "?", 14)),
            escape(peer.address),
            health_markup(peer.health),
            "-" if latency is None else self.figures.volatile(f"{latency:.1f} ms"),
            escape(one_line(", ".join(models), 20)) if models else "-",
        )

    def _draw_detail(self) -> None:
        detail = self.query_one("#peer-detail", Static)
        peer = self.selected()
        if peer is None:
            detail.update("")
            return
        fig = self.figures
        seen = peer.last_seen
        ago = "never" if not seen else fig.volatile(f"{max(0.0, time.time() - seen):.0f} s ago")
        found = ", ".join(peer.discovered_by)
        lines = [
            f"[b]{escape(one_line(peer.name, 20))}[/]  [dim]id {escape(peer.id)} · "
            f"v{escape(peer.version or '?')} · via {escape(found)}[/]",
        ]
        if not peer.paired:
            lines.append(f"Seen {ago}. Not paired: it gets no requests from here. Enter pairs it.")
        elif peer.health != "ok":
            lines.append(
                f"Seen {ago}. Paired, {escape(peer.health)}: requests go elsewhere until it is back."
            )
        else:
            lines.append(
                f"Seen {ago} · {peer.requests_in_flight} in flight · "
                f"{fig.rate(peer.tokens_per_second)} tok/s · "
                f"{fig.bytes(peer.vram_free, volatile=True)} free of "
                f"{fig.bytes(peer.vram_total, volatile=True)}"
            )
            loaded = ", ".join(peer.loaded_models) or "none"
            loadable = ", ".join(peer.available_models) or "none"
            lines.append(escape(one_line(f"Loaded: {loaded} · can load: {loadable}", 76)))
            for shard in peer.shards:  # its parts of sharded models
                lines.append(
                    escape(
                        one_line(
                            f"Shard: {shard.model} rank {shard.rank}/{len(shard.participants)} "
                            f"layers {shard.layers[0]}-{shard.layers[1]} · {shard.state} · "
                            f"{fig.bytes(shard.memory_bytes)} · "
                            f"{fig.rate(shard.tokens_per_second)} tok/s",
                            76,
                        )
                    )
                )
        detail.update("\n".join(lines))

    def selected(self) -> PeerView | None:
        table = self.query_one("#peer-table", DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self._peers.get(row_key.value or "")

    def show_status(self, text: str, *, error: bool = False) -> None:
        """One line about the last action; it goes after a while, as the table moves on."""
        status = self.query_one("#peers-status", Static)
        status.set_class(error, "error")
        status.update(escape(text))
        if self._status_timer is not None:
            self._status_timer.stop()
        self._status_timer = self.set_timer(STATUS_SECONDS, lambda: status.update(""))

    def on_data_table_row_highlighted(self) -> None:
        self._draw_detail()

    async def on_data_table_row_selected(self) -> None:
        await self.action_pair()

    # ---- actions -----------------------------------------------------------------------
    async def action_pair(self) -> None:
        peer = self.selected()
        if peer is None:
            return
        if peer.paired:
            self.show_status(f"{peer.name} is already paired; u unpairs it.")
            return
        await self.salut.action_show("pairing")
        screen = self.app.screen
        if isinstance(screen, PairingScreen):
            screen.prefill(peer.address)

    def action_unpair(self) -> None:
        peer = self.selected()
        if peer is None or self.node.cluster is None:
            return
        if not peer.paired:
            self.show_status(f"{peer.name} is not paired.")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(
                    self._unpair(peer.id, peer.name), group="unpair", exit_on_error=False
                )

        self.app.push_screen(ConfirmUnpair(peer.name), answered)

    async def _unpair(self, node_id: str, name: str) -> None:
        assert self.node.cluster is not None
        try:
            removed = await self.node.cluster.unpair(node_id)
        except Exception as exc:  # one line on the screen; the log keeps the traceback
            log.warning("unpairing %s failed", name, exc_info=True)
            self.show_status(f"Could not unpair {name}: {type(exc).__name__}: {exc}", error=True)
            return
        if removed is None:
            self.show_status(f"{name} was not paired any more.")
        else:
            self.show_status(f"Unpaired {name}: both nodes forgot each other.")
        self.redraw({"peers"})
