"""Leaving the UI: what would be lost (asked about first), and the screen shown while the node
stops (finishing streams and unloading models takes a second or two), or, for an attached UI,
while it detaches from a node that keeps running."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from salut_tui.ui.screens.base import NodeScreen


def quit_reasons(in_flight: int, screens: list[NodeScreen], *, attached: bool = False) -> list[str]:
    """Why quitting now would lose something; empty when it would not. An attached UI leaves
    the node running: its streams go on (a chat answer of this UI's own stops)."""
    reasons = []
    if in_flight and not attached:
        plural = "s" if in_flight > 1 else ""
        reasons.append(f"{in_flight} stream{plural} in flight will be cut short")
    reasons.extend(r for r in (s.unsaved_changes() for s in screens) if r)
    return reasons


class Stopping(ModalScreen[None]):
    """Shown from the moment the user confirms until the app exits; it takes no keys."""

    def __init__(self, in_flight: int, *, attached: bool = False) -> None:
        super().__init__()
        self.in_flight = in_flight
        self.attached = attached

    def compose(self) -> ComposeResult:
        if self.attached:
            text = "[b]Detaching…[/] the node keeps running"
        else:
            streams = f"finishing {self.in_flight} stream(s), " if self.in_flight else ""
            text = f"[b]Stopping…[/] {streams}unloading models"
        with Vertical(id="stopping", classes="dialog"):
            yield Static(text, id="stopping-text")
