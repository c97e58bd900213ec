"""Logs: the node's log records as they come, filtered by level."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Label, RichLog, Select

from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.state import LEVELS, LogEntry

LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "",
    "WARNING": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold red",
}


class LogsScreen(NodeScreen):
    SCREEN_TITLE = "Logs"
    HINT = "v cycle level · ctrl+l clear view"
    BINDINGS = [
        Binding("v", "cycle_level", "Level", show=False),
        Binding("ctrl+l", "clear_view", "Clear", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.level = "INFO"

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="log-controls"):
            yield Label("level ")
            yield Select(
                [(name, name) for name in LEVELS],
                value=self.level,
                allow_blank=False,
                compact=True,
                id="log-level",
            )
        yield RichLog(id="log-view", max_lines=2000, wrap=True, auto_scroll=True)

    def commands(self) -> Iterable[SystemCommand]:
        for name in LEVELS:
            yield SystemCommand(
                f"Logs: {name} and above", "Filter the Logs screen", self._setter(name)
            )

    def _setter(self, name: str):
        def set_level() -> None:
            self.query_one("#log-level", Select).value = name

        return set_level

    def on_screen_resume(self) -> None:
        self.salut.draw_title(self)
        self._replay()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "log-level" and event.value is not Select.BLANK:
            self.level = str(event.value)
            self._replay()

    def _replay(self) -> None:
        view = self.query_one("#log-view", RichLog)
        view.clear()
        for entry in self.state.logs_at_least(LEVELS[self.level]):
            view.write(self._line(entry))

    def append(self, entry: LogEntry) -> None:
        if entry.levelno >= LEVELS[self.level]:
            self.query_one("#log-view", RichLog).write(self._line(entry))

    def _line(self, entry: LogEntry) -> Text:
        stamp = self.figures.volatile(time.strftime("%H:%M:%S", time.localtime(entry.created)))
        line = Text(f"{stamp} ")
        line.append(f"{entry.levelname:<7} ", style=LEVEL_STYLES.get(entry.levelname, ""))
        line.append(f"{entry.name}: ", style="dim")
        line.append(entry.message)
        return line

    def action_cycle_level(self) -> None:
        names = list(LEVELS)
        following = names[(names.index(self.level) + 1) % len(names)]
        self.query_one("#log-level", Select).value = following

    def action_clear_view(self) -> None:
        self.query_one("#log-view", RichLog).clear()
