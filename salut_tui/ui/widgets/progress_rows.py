"""Progress rows of the Models screen: a model loading on this node, and a pull or download
(bar, rate, time left, or how it ended)."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from salut_tui.transfer.progress import human_bytes, human_duration
from salut_tui.transfers import TransferView
from salut_tui.ui.state import LoadState


class LoadRow(Horizontal):
    """A model id, its progress bar and the stage the engine reports."""

    def __init__(self, model_id: str, load: LoadState) -> None:
        super().__init__(classes="load-row")
        self.model_id = model_id
        self.load = load
        self._composed = False

    def compose(self) -> ComposeResult:
        yield Label(escape(self.model_id), classes="load-name")
        yield ProgressBar(total=1.0, show_eta=False)
        yield Label("", classes="load-stage")

    def on_mount(self) -> None:
        self._composed = True
        self.show(self.load)

    def show(self, load: LoadState) -> None:
        self.load = load
        if not self._composed:
            return  # on_mount draws the latest state
        self.query_one(ProgressBar).update(progress=0.0 if load.error else load.fraction)
        stage = f"[red]{escape(load.error)}[/]" if load.error else escape(load.stage)
        self.query_one(".load-stage", Label).update(stage)


def transfer_title(view: TransferView) -> str:
    """What moves where: `m <- B` (a pull), `m -> B` (a copy for B's part of a sharded load),
    `m <- A (for sharding)` (that copy, on B), `m <- hub` (a download)."""
    arrow = {"pull": "<-", "copy": "->", "fetch": "<-"}.get(view.kind, "<- hub")
    source = f" {view.source}" if view.kind != "download" else ""
    why = " (for sharding)" if view.kind == "fetch" else ""
    return f"{view.model} {arrow}{source}{why}"


class TransferRow(Horizontal):
    """A pull or download: its progress bar, rate and time left, or how it ended."""

    def __init__(self, view: TransferView) -> None:
        super().__init__(classes="load-row")
        self.view = view
        self._composed = False

    def compose(self) -> ComposeResult:
        yield Label(escape(transfer_title(self.view)), classes="load-name")
        yield ProgressBar(total=1.0, show_eta=False)
        yield Label("", classes="load-stage")

    def on_mount(self) -> None:
        self._composed = True
        self.show(self.view)

    def show(self, view: TransferView) -> None:
        self.view = view
        if not self._composed:
            return
        fraction = view.done / view.total if view.total else 0.0
        self.query_one(ProgressBar).update(progress=1.0 if view.state == "done" else fraction)
        if view.state == "failed":
            text = f"[red]{escape(view.message)}[/]"
        elif view.state == "done":
            text = f"done: {human_bytes(view.received)} copied"
        else:
            text = f"{view.stage} {human_bytes(view.rate)}/s ETA {human_duration(view.eta)}"
        self.query_one(".load-stage", Label).update(text)
