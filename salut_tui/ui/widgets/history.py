"""A node's history as three sparklines (tokens/s, in flight, memory), btop style."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from salut_tui.ui.format import Figures
from salut_tui.ui.history import NodeSeries

METRICS = (("rate", "tok/s"), ("in_flight", "in flight"), ("memory_used", "memory"))


class NodeHistory(Vertical):
    """The header (the node's name) and one row per metric: label, sparkline, last value."""

    def __init__(self, key: str, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="node-history")
        self.key = key
        self._title = title

    def compose(self) -> ComposeResult:
        yield Static(f"[b]{escape(self._title)}[/]", classes="history-name")
        for attr, label in METRICS:
            with Horizontal(classes="history-row"):
                yield Label(label, classes="history-label")
                yield Sparkline([], summary_function=max, classes=f"history-{attr}")
                yield Static("", classes=f"history-value history-value-{attr}")

    def show(self, series: NodeSeries, title: str, figures: Figures) -> None:
        names = self.query(".history-name").results(Static)
        name = next(names, None)
        if name is None:  # mounted but not composed yet: the next second draws it
            return
        name.update(f"[b]{escape(title)}[/]")
        values: dict[str, Callable[[Sequence[float]], str]] = {
            "rate": lambda d: figures.rate(d[-1]) if d else "-",
            "in_flight": lambda d: f"{d[-1]:.0f}" if d else "-",
            "memory_used": lambda d: _memory(d, series.memory_total, figures),
        }
        for attr, _label in METRICS:
            data = list(getattr(series, attr))
            # Snapshot runs draw no curve: the samples depend on how long the test ran.
            self.query_one(f".history-{attr}", Sparkline).data = (
                [] if figures.mask_volatile else data
            )
            text = figures.volatile(values[attr](data))  # the sample count varies too
            self.query_one(f".history-value-{attr}", Static).update(text)


def _memory(data: Sequence[float], total: int | None, figures: Figures) -> str:
    if not data:
        return "-"
    used = figures.bytes(int(data[-1]), volatile=True)
    return f"{used} of {figures.bytes(total, volatile=True)}" if total else used
