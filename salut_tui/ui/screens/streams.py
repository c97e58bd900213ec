"""Streams: every request the node serves, live, and the finished ones kept as history."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.markup import escape
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from salut_tui.ui.format import one_line
from salut_tui.ui.messages import Topic
from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.screens.stream_detail import (
    StreamDetail,
    TextFollower,
    status_mark,
    stream_line,
)
from salut_tui.ui.state import StreamRecord

# The figures come before Client and Prompt so that they fit at 80 columns.
COLUMNS = ("", "Model", "Tokens", "TTFT", "tok/s", "Finish", "Client", "Prompt")
# Redrawing the text of a long live stream costs time; at most this often.
REDRAW_INTERVAL = 0.25


class StreamsScreen(NodeScreen):
    SCREEN_TITLE = "Streams"
    HINT = "enter open · ↑↓ select · y copy text · c clear finished · ? keys"
    TOPICS = frozenset({"streams"})
    BINDINGS = [
        Binding("c", "clear_finished", "Clear finished", show=False),
        Binding("enter", "open", "Open the stream", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._last_redraw = 0.0
        self._redraw_scheduled = False
        self._drawn_finished: set[str] = set()  # finished rows never change again
        self._follower: TextFollower | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="streams"):
            table: DataTable = DataTable(id="stream-table", cursor_type="row")
            table.add_columns(*COLUMNS)
            yield table
            yield Static(
                "[dim]No requests yet. Point a client at this node's API.[/]",
                id="stream-summary",
            )
            with VerticalScroll(id="stream-preview"):
                yield Static("", id="stream-text", markup=False)

    def on_mount(self) -> None:
        self.query_one("#stream-table").focus()
        self._follower = TextFollower(
            self.query_one("#stream-preview", VerticalScroll),
            self.query_one("#stream-text", Static),
            limit=4000,
        )
        self.set_interval(REDRAW_INTERVAL, self._follow_live)

    def _follow_live(self) -> None:
        """Tokens are not messages (see bridge.py): pick them up while anything streams."""
        if self.is_current and self.state.streams.live_count():
            self._redraw_now()

    def commands(self) -> Iterable[SystemCommand]:
        records = self.state.streams.records.values()
        if records:
            yield SystemCommand("Open stream", "Show the selected stream in full", self.action_open)
        if any(not r.live for r in records):
            yield SystemCommand(
                "Clear finished streams", "Empty the history", self.action_clear_finished
            )

    def copy_offer(self) -> tuple[str, str] | None:
        record = self.selected() if self.is_mounted else None
        return None if record is None else ("the stream's text", record.text)

    # ---- drawing -----------------------------------------------------------------------
    def redraw(self, topics: set[Topic]) -> None:
        # Token events arrive far faster than a terminal can usefully show them: draw at most
        # every REDRAW_INTERVAL and let the later call pick up everything that came meanwhile.
        wait = self._last_redraw + REDRAW_INTERVAL - time.monotonic()
        if wait > 0:
            if not self._redraw_scheduled:
                self._redraw_scheduled = True
                self.set_timer(wait, self._redraw_now)
            return
        self._redraw_now()

    def _redraw_now(self) -> None:
        self._redraw_scheduled = False
        self._last_redraw = time.monotonic()
        table = self.query_one("#stream-table", DataTable)
        now = time.monotonic()
        records = self.state.streams.records
        for key in [k for k in table.rows if k.value not in records]:
            table.remove_row(key)
            self._drawn_finished.discard(key.value or "")
        follow = table.row_count == 0 or table.cursor_row == table.row_count - 1
        for record in records.values():
            if record.request_id in self._drawn_finished:
                continue
            cells = self._cells(record, now)
            if not record.live:
                self._drawn_finished.add(record.request_id)
            if record.request_id in table.rows:
                for column, value in zip(table.columns, cells, strict=True):
                    table.update_cell(record.request_id, column, value)
            else:
                table.add_row(*cells, key=record.request_id)
        if follow and table.row_count:
            table.move_cursor(row=table.row_count - 1)
        self._draw_preview()

    def _cells(self, record: StreamRecord, now: float) -> tuple[str, ...]:
        fig = self.figures
        return (
            status_mark(record),
            escape(one_line(record.model, 20)),
            str(record.completion_tokens),
            fig.seconds(record.time_to_first_token),
            fig.rate(record.tokens_per_second(now)),
            "" if record.live else escape(record.status),
            escape(record.client or "-"),
            escape(one_line(record.prompt_preview, 28)),
        )

    def selected(self) -> StreamRecord | None:
        table = self.query_one("#stream-table", DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return self.state.streams.records.get(row_key.value or "")

    def _draw_preview(self, *, moved: bool = False) -> None:
        record = self.selected()
        if record is None or self._follower is None:
            return
        self.query_one("#stream-summary", Static).update(stream_line(record, self.figures))
        self._follower.show(record, restart=moved)

    def on_data_table_row_highlighted(self) -> None:
        self._draw_preview(moved=True)

    def on_data_table_row_selected(self) -> None:
        self.action_open()

    # ---- actions -----------------------------------------------------------------------
    def action_open(self) -> None:
        record = self.selected()
        if record is not None:
            self.app.push_screen(StreamDetail(record, self.figures))

    def action_clear_finished(self) -> None:
        records = self.state.streams.records
        for request_id in [r.request_id for r in records.values() if not r.live]:
            del records[request_id]
        self._redraw_now()
        if not records:
            self.query_one("#stream-summary", Static).update("[dim]History cleared.[/]")
            self.query_one("#stream-text", Static).update("")
            if self._follower is not None:
                self._follower.forget()
