"""Leaving the UI: what would be lost (asked about first), and the screen shown while the node
stops (finishing streams and unloading models takes a second or two)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from salut_tui.ui.screens.base import NodeScreen


def quit_reasons(in_flight: int, screens: list[NodeScreen]) -> list[str]:
    """Why quitting now would lose something; empty when it would not."""
    reasons = []
    if in_flight:
        plural = "s" if in_flight > 1 else ""
        reasons.append(f"{in_flight} stream{plural} in flight will be cut short")
    reasons.extend(r for r in (s.unsaved_changes() for s in screens) if r)
    return reasons


class Stopping(ModalScreen[None]):
    """Shown from the moment the user confirms until the app exits; it takes no keys."""

    def __init__(self, in_flight: int) -> None:
        super().__init__()
        self.in_flight = in_flight

    def compose(self) -> ComposeResult:
        streams = f"finishing {self.in_flight} stream(s), " if self.in_flight else ""
        with Vertical(id="stopping", classes="dialog"):
            yield Static(f"[b]Stopping…[/] {streams}unloading models", id="stopping-text")
