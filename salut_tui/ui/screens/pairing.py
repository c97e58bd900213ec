"""Pairing: trust another machine with a short code. The cluster package drives the states."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from salut_tui.ui.screens.base import NodeScreen


class PairingScreen(NodeScreen):
    SCREEN_TITLE = "Pairing"
    TOPICS = frozenset({"pairing", "peers"})

    def compose_body(self) -> ComposeResult:
        with Vertical(id="pairing"):
            yield Static("", id="pairing-state")
            yield Static(
                "Pairing lets two Salut nodes trust each other: one shows a short code, the "
                "other types it, and from then on they share models and requests over an "
                "encrypted link.",
                id="pairing-help",
                classes="dim",
            )

    def redraw(self, topics: set[str]) -> None:
        state = self.state.pairing
        if state is not None:
            text = f"[b]Pairing:[/] {escape(state.state)}"
            if state.detail:
                text += f"\n{escape(state.detail)}"
        elif self.node.cluster is None:
            text = "No peers to pair with: this node is not running a cluster."
        else:
            text = "Not pairing. No peers paired yet."
        self.query_one("#pairing-state", Static).update(text)
