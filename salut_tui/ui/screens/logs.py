"""Logs: the node's log records as they come (API requests included), filtered by level, by
source (the logger's name) and by a `/` search.

The app keeps the last `LOG_LIMIT` records (ui/state.py) whatever the filters say, so changing a
filter redraws from that buffer. Choosing DEBUG here also makes the node's loggers emit DEBUG
records from then on (they are not created at all below the configured level).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Label, RichLog, Select

from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.state import LEVELS, LogEntry, LogFilter

LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "",
    "WARNING": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold red",
}
ALL_SOURCES = "all sources"


class LogsScreen(NodeScreen):
    SCREEN_TITLE = "Logs"
    HINT = "/ search · v level · s source · esc clear search · ctrl+l clear view"
    BINDINGS = [
        Binding("v", "cycle_level", "Level", show=False),
        Binding("s", "cycle_source", "Source", show=False),
        Binding("slash", "search", "Search", show=False),
        Binding("escape", "end_search", "End search", show=False),
        Binding("ctrl+l", "clear_view", "Clear", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter = LogFilter()
        self._sources: list[str] = []

    @property
    def level(self) -> str:
        return self.filter.level

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="log-controls"):
            yield Label("level ")
            yield Select(
                [(name, name) for name in LEVELS],
                value=self.filter.level,
                allow_blank=False,
                compact=True,
                id="log-level",
            )
            yield Label(" source ")
            yield Select(
                [(ALL_SOURCES, ALL_SOURCES)],
                value=ALL_SOURCES,
                allow_blank=False,
                compact=True,
                id="log-source",
            )
        yield Input(id="log-search", compact=True, placeholder="search: text in the message")
        yield RichLog(id="log-view", max_lines=2000, wrap=True, auto_scroll=True)

    def on_mount(self) -> None:
        self.query_one("#log-search").display = False

    def commands(self) -> Iterable[SystemCommand]:
        for name in LEVELS:
            yield SystemCommand(
                f"Logs: {name} and above", "Filter the Logs screen", self._setter(name)
            )
        yield SystemCommand("Logs: search", "Show only records with a text", self.action_search)

    def _setter(self, name: str):
        def set_level() -> None:
            self.query_one("#log-level", Select).value = name

        return set_level

    def on_screen_resume(self) -> None:
        self.salut.draw_title(self)
        self._update_sources()
        self._replay()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.value is Select.BLANK:
            return
        if event.select.id == "log-level":
            self.filter.level = str(event.value)
            if LEVELS[self.filter.level] < self.salut.log_level:
                self.salut.apply_log_level(self.filter.level)  # DEBUG: ask for more records
        elif event.select.id == "log-source":
            self.filter.source = None if event.value == ALL_SOURCES else str(event.value)
        self._replay()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "log-search":
            self.filter.text = event.value
            self._replay()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "log-search":
            self.set_focus(None)  # keep the search, give the keys back to the screen

    def _replay(self) -> None:
        view = self.query_one("#log-view", RichLog)
        view.clear()
        for entry in self.state.logs:
            if self.filter.matches(entry):
                view.write(self._line(entry))

    def append(self, entry: LogEntry) -> None:
        if entry.name not in self._sources:
            self._update_sources()
        if self.filter.matches(entry):
            self.query_one("#log-view", RichLog).write(self._line(entry))

    def _update_sources(self) -> None:
        names = self.state.log_sources()
        if names == self._sources:
            return
        self._sources = names
        select = self.query_one("#log-source", Select)
        current = select.value
        with self.prevent(Select.Changed):
            select.set_options([(ALL_SOURCES, ALL_SOURCES), *((n, n) for n in names)])
            select.value = current if current in (ALL_SOURCES, *names) else ALL_SOURCES

    def _line(self, entry: LogEntry) -> Text:
        stamp = self.figures.volatile(time.strftime("%H:%M:%S", time.localtime(entry.created)))
        line = Text(f"{stamp} ")
        line.append(f"{entry.levelname:<7} ", style=LEVEL_STYLES.get(entry.levelname, ""))
        line.append(f"{entry.name}: ", style="dim")
        line.append(entry.message)
        if self.filter.text:
            line.highlight_words([self.filter.text], style="reverse", case_sensitive=False)
        return line

    # ---- actions -----------------------------------------------------------------------
    def action_cycle_level(self) -> None:
        names = list(LEVELS)
        following = names[(names.index(self.filter.level) + 1) % len(names)]
        self.query_one("#log-level", Select).value = following

    def action_cycle_source(self) -> None:
        options = [ALL_SOURCES, *self._sources]
        current = self.filter.source or ALL_SOURCES
        following = options[(options.index(current) + 1) % len(options)]
        self.query_one("#log-source", Select).value = following

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.display = True
        search.focus()

    def action_end_search(self) -> None:
        search = self.query_one("#log-search", Input)
        if search.value:
            search.value = ""  # Input.Changed redraws
        search.display = False
        self.set_focus(None)

    def action_clear_view(self) -> None:
        self.query_one("#log-view", RichLog).clear()
