"""What every Salut screen shares: a title line, a key hint line, and redraw hooks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult, SystemCommand
from textual.screen import Screen
from textual.widgets import Footer, Static

from salut_tui.ui.format import Figures
from salut_tui.ui.messages import Topic
from salut_tui.ui.seam import UINode
from salut_tui.ui.state import UIState

if TYPE_CHECKING:  # the app imports every screen: a screen names its app's type only
    from salut_tui.ui.app import SalutApp


class NodeScreen(Screen):
    """A screen that draws from the node and the UI state.

    `redraw(topics)` is called by the app when a topic it listens to changed while the screen
    is shown, and with every topic when the screen comes back into view.
    """

    SCREEN_TITLE: ClassVar[str] = ""
    HINT: ClassVar[str] = ""
    TOPICS: ClassVar[frozenset[Topic]] = frozenset()

    @property
    def salut(self) -> SalutApp:
        return self.app  # type: ignore[return-value]

    @property
    def node(self) -> UINode:
        return self.salut.node

    @property
    def state(self) -> UIState:
        return self.salut.state

    @property
    def figures(self) -> Figures:
        return self.salut.figures

    def compose(self) -> ComposeResult:
        yield Static(self.SCREEN_TITLE, id="title-bar")
        yield from self.compose_body()
        if self.HINT:
            yield Static(self.HINT, id="hint")
        # The palette key is on the title bar: at 80 columns the footer holds the screens.
        yield Footer(compact=True, show_command_palette=False)

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_screen_resume(self) -> None:
        self.salut.draw_title(self)
        self.redraw(set(self.TOPICS))

    def redraw(self, topics: set[Topic]) -> None:
        """Refresh the widgets that show these topics; the default screen shows none."""

    def tick(self) -> None:
        """Called once a second while the screen is shown (uptime, rates)."""

    def commands(self) -> Iterable[SystemCommand]:
        """This screen's actions for the command palette; only those that would do something
        now (the palette also lists them from other screens, see `ui/palette.py`)."""
        return ()

    def copy_offer(self) -> tuple[str, str] | None:
        """(what, text) that the copy key `y` puts on the clipboard here, if anything."""
        return None

    def unsaved_changes(self) -> str | None:
        """Why quitting now would lose this screen's edits, or None."""
        return None

    def update_title(self, status: str) -> None:
        name = self.node.settings.display_name()
        left = f" Salut · {name} · {self.SCREEN_TITLE}"
        for bar in self.query("#title-bar").results(Static):  # none while shutting down
            bar.update(f"{left}   {status}   ^p commands")
