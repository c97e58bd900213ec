"""A stream opened full screen: everything the node knows about one request, and its text."""

from __future__ import annotations

import time

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Static

from salut_tui.ui.format import Figures, printable
from salut_tui.ui.state import StreamRecord


def stream_summary(record: StreamRecord, figures: Figures) -> str:
    finished = record.finished
    lines = [
        f"[b]Request[/]  {escape(record.request_id)}   [b]Client[/] {escape(record.client or '-')}",
        f"[b]Model[/]    {escape(record.model)}   [b]Served by[/] {escape(record.served_by)}",
        f"[b]Tokens[/]   {record.completion_tokens}"
        f"   [b]TTFT[/] {figures.seconds(record.time_to_first_token)}"
        f"   [b]tok/s[/] {figures.rate(record.tokens_per_second(time.monotonic()))}",
        f"[b]Status[/]   {escape(record.status)}",
    ]
    if finished is not None and finished.error:
        lines.append(f"[red]{escape(finished.error)}[/]")
    lines.append(f"[b]Prompt[/]   {escape(record.prompt_preview)}")
    return "\n".join(lines)


class StreamDetail(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, record: StreamRecord, figures: Figures) -> None:
        super().__init__()
        self.record = record
        self.figures = figures
        self._follower: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="stream-detail", classes="dialog"):
            yield Static(stream_summary(self.record, self.figures), id="detail-summary")
            with VerticalScroll(id="detail-scroll"):
                yield Static(printable(self.record.text), id="detail-text", markup=False)
            yield Static("[dim]escape: close[/]")

    def on_mount(self) -> None:
        if self.record.live:
            self._follower = self.set_interval(0.25, self._follow)

    def _follow(self) -> None:
        self.query_one("#detail-summary", Static).update(stream_summary(self.record, self.figures))
        self.query_one("#detail-text", Static).update(printable(self.record.text))
        if not self.record.live and self._follower is not None:  # final: nothing changes now
            self._follower.stop()

    def action_close(self) -> None:
        self.dismiss(None)
