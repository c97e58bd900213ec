"""Models: what this node has and could load; load and unload with live progress; GGUF import."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from rich.markup import escape
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, ProgressBar, Static

from salut_tui.engine.types import ModelError
from salut_tui.ui.messages import Topic
from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.screens.import_dialog import ImportDialog, ImportRequest
from salut_tui.ui.state import LoadState

log = logging.getLogger(__name__)


def describe_error(exc: BaseException) -> str:
    """One line for people; the traceback goes to the log, never onto the screen."""
    if isinstance(exc, ModelError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


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


class ModelsScreen(NodeScreen):
    SCREEN_TITLE = "Models"
    HINT = "enter/l load · u unload · f force load · i import GGUF · r refresh"
    TOPICS = frozenset({"models"})
    BINDINGS = [
        Binding("l", "load", "Load", show=False),
        Binding("f", "load(True)", "Force load", show=False),
        Binding("u", "unload", "Unload", show=False),
        Binding("i", "import_gguf", "Import GGUF", show=False),
        Binding("r", "refresh_models", "Refresh", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="models"):
            table: DataTable = DataTable(id="model-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("Model", "State", "Size", "Memory")
            yield table
            yield Vertical(id="loads")
            yield Static("", id="models-status")

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Load model", "Load the selected model", self.action_load)
        yield SystemCommand("Unload model", "Unload the selected model", self.action_unload)
        yield SystemCommand(
            "Import GGUF", "Convert a GGUF file into a model", self.action_import_gguf
        )

    def on_mount(self) -> None:
        self.query_one("#model-table").focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_load()

    # ---- drawing -----------------------------------------------------------------------
    def redraw(self, topics: set[Topic]) -> None:
        self._draw_table()
        self._draw_loads()

    def _draw_table(self) -> None:
        table = self.query_one("#model-table", DataTable)
        selected = self.selected_model()
        table.clear()
        loads = self.state.models.loads
        for info in self.node.models():
            load = loads.get(info.id)
            if info.loaded:
                state = "[green]loaded[/]"
            elif load is not None and not load.done:
                state = f"loading {load.fraction * 100:.0f}%"
            elif load is not None and load.error:
                state = "[red]failed[/]"
            else:
                state = "available" if info.owned_by == "local" else f"on {escape(info.owned_by)}"
            table.add_row(
                escape(info.id),
                state,
                self.figures.bytes(info.size_bytes),
                self.figures.bytes(info.memory_bytes),
                key=info.id,
            )
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))

    def _draw_loads(self) -> None:
        box = self.query_one("#loads", Vertical)
        rows = {row.model_id: row for row in box.query(LoadRow)}
        for model_id, load in self.state.models.loads.items():
            row = rows.pop(model_id, None)
            if row is None:
                box.mount(LoadRow(model_id, load))
            else:
                row.show(load)
        for row in rows.values():
            row.remove()

    def selected_model(self) -> str | None:
        table = self.query_one("#model-table", DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    def show_status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#models-status", Static)
        status.set_class(error, "error")
        status.update(escape(text))

    # ---- actions -----------------------------------------------------------------------
    def action_load(self, force: bool = False) -> None:
        model_id = self.selected_model()
        if model_id is None:
            self.show_status("No model to load. Import a GGUF file (i) or set models_dir.")
            return
        self.show_status(f"Loading {model_id}…")
        self.run_worker(self._load(model_id, force), group="models", exit_on_error=False)

    async def _load(self, model_id: str, force: bool) -> None:
        try:
            await self.node.load_model(model_id, force=force)
        except Exception as exc:  # shown on the screen; the log keeps the traceback
            log.warning("load of %s failed", model_id, exc_info=True)
            self.show_status(f"Could not load {model_id}: {describe_error(exc)}", error=True)
        else:
            self.show_status(f"Loaded {model_id}.")
        self.redraw({"models"})

    def action_unload(self) -> None:
        model_id = self.selected_model()
        if model_id is not None:
            self.run_worker(self._unload(model_id), group="models", exit_on_error=False)

    async def _unload(self, model_id: str) -> None:
        try:
            await self.node.unload_model(model_id)
        except Exception as exc:
            log.warning("unload of %s failed", model_id, exc_info=True)
            self.show_status(f"Could not unload {model_id}: {describe_error(exc)}", error=True)
        else:
            self.show_status(f"Unloaded {model_id}.")
        self.redraw({"models"})

    def action_refresh_models(self) -> None:
        self.redraw({"models"})

    def action_import_gguf(self) -> None:
        self.app.push_screen(ImportDialog(), self._start_import)

    def _start_import(self, request: ImportRequest | None) -> None:
        if request is not None:
            self.run_worker(self._import(request), group="import", exit_on_error=False)

    async def _import(self, request: ImportRequest) -> None:
        loop = asyncio.get_running_loop()

        def progress(fraction: float, stage: str) -> None:  # called on the engine's thread
            loop.call_soon_threadsafe(
                self.show_status, f"Importing {request.model_id}: {fraction * 100:.0f}% {stage}"
            )

        self.show_status(f"Importing {request.gguf_path.name} as {request.model_id}…")
        try:
            out = await self.node.import_gguf(
                request.gguf_path, request.model_id, dtype=request.dtype, progress=progress
            )
        except Exception as exc:
            log.warning("import of %s failed", request.gguf_path, exc_info=True)
            self.show_status(f"Import failed: {describe_error(exc)}", error=True)
            return
        self.show_status(f"Imported {request.model_id} into {out}. Press l to load it.")
        self.redraw({"models"})
