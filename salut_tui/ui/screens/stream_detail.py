"""A stream opened full screen: everything the node knows about one request, and its text.

Live text follows its end like `tail -f`: the scroll is anchored to the bottom while streaming,
scrolling up releases the anchor (the text stays put under the reader), and scrolling back to
the end (or `end`) follows again. Tokens are picked up at 4 Hz, never one update per token.
"""

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

FOLLOW_INTERVAL = 0.25


def status_mark(record: StreamRecord) -> str:
    """One cell: live, completed (stop or length), cancelled (client gone, stopped) or error."""
    if record.live:
        return "[yellow]●[/]"
    return {"error": "[red]✗[/]", "cancelled": "[magenta]⊘[/]"}.get(record.status, "[green]✓[/]")


def stream_line(record: StreamRecord, figures: Figures) -> str:
    """The stream in one line, above its text in the Streams preview."""
    rate = figures.rate(record.tokens_per_second(time.monotonic()))
    line = (
        f"{status_mark(record)} [b]{escape(record.status)}[/] · {escape(record.model)} · "
        f"served by {escape(record.served_by)} · {record.completion_tokens} tokens · "
        f"TTFT {figures.seconds(record.time_to_first_token)} · {rate} tok/s"
    )
    finished = record.finished
    if finished is not None and finished.error:
        line += f"\n[red]{escape(finished.error)}[/]"
    return line


def stream_summary(record: StreamRecord, figures: Figures) -> str:
    finished = record.finished
    lines = [
        f"[b]Request[/]  {escape(record.request_id)}   [b]Client[/] {escape(record.client or '-')}",
        f"[b]Model[/]    {escape(record.model)}   [b]Served by[/] {escape(record.served_by)}",
        f"[b]Tokens[/]   {record.completion_tokens}"
        f"   [b]TTFT[/] {figures.seconds(record.time_to_first_token)}"
        f"   [b]tok/s[/] {figures.rate(record.tokens_per_second(time.monotonic()))}",
        f"[b]Status[/]   {status_mark(record)} {escape(record.status)}",
    ]
    if finished is not None and finished.error:
        lines.append(f"[red]{escape(finished.error)}[/]")
    lines.append(f"[b]Prompt[/]   {escape(record.prompt_preview)}")
    return "\n".join(lines)


class TextFollower:
    """Shows one record's text in a scroll, redrawing only when tokens came since last time."""

    def __init__(self, scroll: VerticalScroll, text: Static, limit: int | None = None) -> None:
        self.scroll = scroll
        self.text = text
        self.limit = limit
        self._shown: tuple[str, int] | None = None  # (request id, parts drawn)
        scroll.anchor()

    def show(self, record: StreamRecord, *, restart: bool = False) -> None:
        shown = (record.request_id, len(record.parts))
        if shown == self._shown and not restart:
            return
        new_record = self._shown is None or self._shown[0] != record.request_id
        self._shown = shown
        text = record.text
        self.text.update(printable(text if self.limit is None else text[-self.limit :]))
        if new_record or restart:
            self.scroll.anchor()  # another stream: start at its end, following

    def forget(self) -> None:
        self._shown = None

    @property
    def following(self) -> bool:
        return self.scroll.is_anchored and not self.scroll._anchor_released


class StreamDetail(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("y", "copy", "Copy the text"),
        Binding("end", "follow", "Go to the end and follow"),
    ]

    def __init__(self, record: StreamRecord, figures: Figures) -> None:
        super().__init__()
        self.record = record
        self.figures = figures
        self._timer: Timer | None = None
        self._follower: TextFollower | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="stream-detail", classes="dialog"):
            yield Static(stream_summary(self.record, self.figures), id="detail-summary")
            with VerticalScroll(id="detail-scroll"):
                yield Static("", id="detail-text", markup=False)
            yield Static("", id="detail-keys")

    def on_mount(self) -> None:
        scroll = self.query_one("#detail-scroll", VerticalScroll)
        self._follower = TextFollower(scroll, self.query_one("#detail-text", Static))
        self._follower.show(self.record)
        scroll.focus()  # ↑↓ pgup pgdn scroll the text
        self._draw_keys()
        if self.record.live:
            self._timer = self.set_interval(FOLLOW_INTERVAL, self._follow)

    def _follow(self) -> None:
        assert self._follower is not None
        self.query_one("#detail-summary", Static).update(stream_summary(self.record, self.figures))
        self._follower.show(self.record)
        self._draw_keys()
        if not self.record.live and self._timer is not None:  # final: nothing changes now
            self._timer.stop()

    def _draw_keys(self) -> None:
        follower = self._follower
        state = ""
        if self.record.live and follower is not None:
            state = (
                "[b]following[/] · "
                if follower.following
                else "[b]paused[/] (scrolled up; end follows again) · "
            )
        self.query_one("#detail-keys", Static).update(
            f"{state}[dim]↑↓ pgup pgdn scroll · end follow · y copy · escape close[/]"
        )

    def action_follow(self) -> None:
        self.query_one("#detail-scroll", VerticalScroll).anchor()
        self._draw_keys()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.record.text)
        self.notify(f"Copied the stream's text ({len(self.record.text)} characters).", timeout=3)

    def action_close(self) -> None:
        self.dismiss(None)
