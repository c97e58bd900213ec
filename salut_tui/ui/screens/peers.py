"""Peers: the other nodes this one knows. The cluster package fills `node.cluster_info()`."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from salut_tui.ui.screens.base import NodeScreen

COLUMNS = ("Name", "Address", "Health", "Models", "In flight", "tok/s")


class PeersScreen(NodeScreen):
    SCREEN_TITLE = "Peers"
    HINT = "6 pair a new machine"
    TOPICS = frozenset({"peers"})

    def compose_body(self) -> ComposeResult:
        with Vertical(id="peers"):
            yield Static("", id="peers-empty")
            table: DataTable = DataTable(id="peer-table", cursor_type="row")
            table.add_columns(*COLUMNS)
            yield table

    def redraw(self, topics: set[str]) -> None:
        peers = self.node.cluster_info().get("peers", [])
        table = self.query_one("#peer-table", DataTable)
        table.clear()
        for peer in peers:
            table.add_row(
                escape(str(peer.get("name", "?"))),
                escape(str(peer.get("address", ""))),
                escape(str(peer.get("health", ""))),
                escape(", ".join(peer.get("loaded_models", []))),
                str(peer.get("requests_in_flight", 0)),
                self.figures.rate(peer.get("tokens_per_second")),
            )
        table.display = bool(peers)
        empty = self.query_one("#peers-empty", Static)
        empty.display = not peers
        if self.node.cluster is None:
            empty.update(
                "No peers. This node runs on its own: "
                f"mode is [b]{escape(self.node.settings.mode)}[/] and no cluster is running."
            )
        else:
            empty.update("No peers yet. Other Salut nodes on this network appear here.")
