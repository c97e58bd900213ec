"""The notification history: every toast this session showed, newest first (key n)."""

from __future__ import annotations

import time

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from salut_tui.ui.notifications import Notice

SEVERITY_MARK = {"information": "[green]●[/]", "warning": "[yellow]▲[/]", "error": "[red]✖[/]"}


class NotificationHistory(ModalScreen[None]):
    """A panel over the current screen; escape or n closes it."""

    BINDINGS = [Binding("escape,n,q", "dismiss", "Close")]

    def __init__(self, notices: list[Notice], *, mask_time: bool = False) -> None:
        super().__init__()
        self._notices = notices
        self._mask_time = mask_time

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="notification-history"):
            yield Static("[b]Notifications[/]  [dim]newest first · esc closes[/]")
            with VerticalScroll():
                yield Static(self._text(), id="notification-list")

    def _text(self) -> str:
        if not self._notices:
            return "[dim]Nothing yet: peers pairing, dropping or coming back show here.[/]"
        lines = []
        for notice in self._notices:
            clock = time.strftime("%H:%M:%S", time.localtime(notice.created))
            stamp = "--:--:--" if self._mask_time else clock
            mark = SEVERITY_MARK.get(notice.severity, "")
            lines.append(f"[dim]{stamp}[/] {mark} {escape(notice.text)}")
        return "\n".join(lines)
