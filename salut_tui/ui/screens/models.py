"""Models: every model of the cluster, where its files are and where it is loaded; load, unload
and copy act on the node that makes sense (over the peer link for a peer); live progress of
loads, copies and downloads; GGUF import; `s` splits a model over paired nodes (the plan first,
then a confirm), and `u` ends a sharded model on every node."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.markup import escape
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, ProgressBar, Static

from salut_tui.engine.types import ModelError
from salut_tui.shard.placement import ShardPlan
from salut_tui.transfer.progress import human_bytes, human_duration
from salut_tui.transfers import TransferView
from salut_tui.ui.errors import describe_error
from salut_tui.ui.messages import Topic
from salut_tui.ui.model_rows import (
    Target,
    describe_plan,
    idle_unload,
    load_target,
    loaded_on,
    pull_source,
    unload_target,
    where,
)
from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.screens.import_dialog import ImportDialog, ImportRequest
from salut_tui.ui.state import LoadState
from salut_tui.ui.widgets.confirm import Confirm
from salut_tui.views import ModelInfo

log = logging.getLogger(__name__)


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


class TransferRow(Horizontal):
    """A pull or download: its progress bar, rate and time left, or how it ended."""

    def __init__(self, view: TransferView) -> None:
        super().__init__(classes="load-row")
        self.view = view
        self._composed = False

    def compose(self) -> ComposeResult:
        arrow = {"pull": "<-", "copy": "->"}.get(self.view.kind, "<- hub")
        source = f" {escape(self.view.source)}" if self.view.kind != "download" else ""
        yield Label(f"{escape(self.view.model)} {arrow}{source}", classes="load-name")
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


class ModelsScreen(NodeScreen):
    SCREEN_TITLE = "Models"
    HINT = "l load · s shard · u unload · p copy here · f force · i import · r refresh"
    TOPICS = frozenset({"models", "peers"})
    BINDINGS = [
        Binding("l", "load", "Load", show=False),
        Binding("s", "load_sharded", "Load sharded", show=False),
        Binding("f", "load(True)", "Force load", show=False),
        Binding("u", "unload", "Unload", show=False),
        Binding("p", "pull", "Copy from a peer", show=False),
        Binding("i", "import_gguf", "Import GGUF", show=False),
        Binding("r", "refresh_models", "Refresh", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="models"):
            table: DataTable = DataTable(id="model-table", cursor_type="row", zebra_stripes=True)
            self._columns = table.add_columns("Model", "Where", "Loaded on", "Idle unload", "Size")
            yield table
            yield Vertical(id="loads")
            yield Vertical(id="transfers")
            yield Static("", id="models-status")

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Load model", "Load the selected model", self.action_load)
        yield SystemCommand(
            "Load sharded", "Split the selected model over paired nodes", self.action_load_sharded
        )
        yield SystemCommand("Unload model", "Unload the selected model", self.action_unload)
        yield SystemCommand(
            "Copy model here", "Copy the selected model from a peer", self.action_pull
        )
        yield SystemCommand(
            "Import GGUF", "Convert a GGUF file into a model", self.action_import_gguf
        )

    def on_mount(self) -> None:
        self._wanted: str | None = None  # the model the cursor goes to at the next draw
        self.query_one("#model-table").focus()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        # Idle-unload countdowns move every second: only those cells (no directory scan).
        table = self.query_one("#model-table", DataTable)
        column = self._columns[3]
        me = self._me
        for model_id in self.node.loaded_model_ids():
            if model_id in table.rows:
                left = self.node.keep_alive.time_left(model_id, time.monotonic())
                info = ModelInfo(model_id, "local", True, nodes=(me,), here=True,
                                 keep_alive_left=left)  # fmt: skip
                table.update_cell(model_id, column, self._idle(info))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_load()

    # ---- drawing -----------------------------------------------------------------------
    def redraw(self, topics: set[Topic]) -> None:
        self._draw_table()
        self._draw_loads()
        self._draw_transfers()

    @property
    def _me(self) -> str:
        return self.node.settings.display_name()

    def _idle(self, info: ModelInfo) -> str:
        text = idle_unload(info, self._me)
        return self.figures.volatile(text) if text.startswith("in ") else text

    def _draw_table(self) -> None:
        table = self.query_one("#model-table", DataTable)
        selected = self._wanted or self.selected_model()
        self._wanted = None
        loads = self.state.models.loads
        rows = []
        for info in self.node.models():
            load = loads.get(info.id)
            on = loaded_on(info, self._me)
            if load is not None and not load.done:
                on = f"loading {load.fraction * 100:.0f}%"
            elif load is not None and load.error and not info.loaded:
                on = "[red]load failed[/]"
            elif info.loaded:
                on = f"[green]{escape(on)}[/]"
            elif info.shard:  # a sharded instance still starting
                on = f"[yellow]{escape(on)}[/]"
            rows.append((info.id, (escape(info.id), escape(where(info)), on,
                                   self._idle(info),
                                   self.figures.bytes(info.size_bytes))))  # fmt: skip
        if [k for k, _ in rows] == [k.value for k in table.rows] and table.row_count:
            for key, cells in rows:  # same rows in the same order: update in place
                for column, cell in zip(table.columns, cells, strict=True):
                    table.update_cell(key, column, cell)
        else:
            table.clear()
            for key, cells in rows:
                table.add_row(*cells, key=key)
        if selected is not None and selected in table.rows:
            # Rows re-sort (loaded models first): the cursor follows the model, not the row.
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

    def _draw_transfers(self) -> None:
        box = self.query_one("#transfers", Vertical)
        rows = {row.view.id: row for row in box.query(TransferRow)}
        for view in self.state.transfers.views.values():
            row = rows.pop(view.id, None)
            if row is None:
                box.mount(TransferRow(view))
            else:
                row.show(view)

    def selected_model(self) -> str | None:
        table = self.query_one("#model-table", DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    def select(self, model_id: str) -> None:
        """Put the cursor on `model_id` (now, or at the next draw if its row is not there)."""
        table = self.query_one("#model-table", DataTable)
        self._wanted = model_id
        if model_id in table.rows:
            table.move_cursor(row=table.get_row_index(model_id))

    def _selected_info(self) -> ModelInfo | None:
        model_id = self.selected_model()
        return next((m for m in self.node.models() if m.id == model_id), None)

    def show_status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#models-status", Static)
        status.set_class(error, "error")
        status.update(escape(text))

    # ---- actions -----------------------------------------------------------------------
    def action_load(self, force: bool = False) -> None:
        info = self._selected_info()
        if info is None:
            self.show_status("No model to load. Import a GGUF file (i) or set models_dir.")
            return
        target = load_target(info)
        if target is None:
            self.show_status(f"No node here or among the peers has the files of {info.id}.")
            return
        self._wanted = info.id
        self.show_status(f"Loading {info.id} on {target.label}…")
        self.run_worker(self._load(info.id, target, force), group="models", exit_on_error=False)

    async def _load(self, model_id: str, target: Target, force: bool) -> None:
        def progress(fraction: float, stage: str) -> None:
            if target.peer is not None:  # this node's own loads have their progress row
                self.show_status(
                    f"Loading {model_id} on {target.label}: {fraction * 100:.0f}% {stage}"
                )

        try:
            result = await self.node.load_on(
                target.peer, model_id, force=force, on_progress=progress
            )
        except Exception as exc:  # shown on the screen; the log keeps the traceback
            log.warning("load of %s failed", model_id, exc_info=True)
            self.show_status(f"Could not load {model_id}: {describe_error(exc)}", error=True)
        else:
            if result.ok:
                self.show_status(f"Loaded {model_id} on {target.label}.")
            else:
                self.show_status(f"Could not load {model_id}: {result.message}", error=True)
        self.select(model_id)
        self.redraw({"models"})

    def action_unload(self) -> None:
        info = self._selected_info()
        if info is None:
            return
        if info.shard:  # ends on every node, wherever its coordinator is
            names = [p.name for p in info.shard]
            self.run_worker(
                self._unload_sharded(info.id, names), group="models", exit_on_error=False
            )
            return
        target = unload_target(info, self._me)
        if target is None:
            self.show_status(f"{info.id} is not loaded on any node.")
            return
        self.run_worker(self._unload(info.id, target), group="models", exit_on_error=False)

    async def _unload(self, model_id: str, target: Target) -> None:
        try:
            result = await self.node.unload_on(target.peer, model_id)
        except Exception as exc:
            log.warning("unload of %s failed", model_id, exc_info=True)
            self.show_status(f"Could not unload {model_id}: {describe_error(exc)}", error=True)
        else:
            if result.ok:
                self.show_status(f"Unloaded {model_id} on {target.label}.")
            else:
                self.show_status(f"Could not unload {model_id}: {result.message}", error=True)
        self.select(model_id)
        self.redraw({"models"})

    async def _unload_sharded(self, model_id: str, names: list[str]) -> None:
        try:
            await self.node.unload_sharded(model_id)
        except Exception as exc:
            log.warning("unload of sharded %s failed", model_id, exc_info=True)
            self.show_status(f"Could not unload {model_id}: {describe_error(exc)}", error=True)
        else:
            self.show_status(f"Unloaded {model_id} on every node ({', '.join(names)}).")
        self.select(model_id)
        self.redraw({"models"})

    def action_load_sharded(self) -> None:
        info = self._selected_info()
        if info is None:
            return
        try:
            plan, nodes = self._shard_plan(info.id)
        except ModelError as exc:
            self.show_status(f"Cannot shard {info.id}: {exc.message}", error=True)
            return
        if plan is None:
            self.show_status(f"No paired peer to split {info.id} over: l loads it here.")
            return

        copy = bool(plan.copies)  # a node lacks the files: the choice is to copy them first
        lacking = ", ".join(c.name for c in plan.copies)

        def answered(yes: bool | None) -> None:
            if yes:
                names = ", ".join(s.name for s in plan.stages)
                first = f"Copying files to {lacking}, then loading" if copy else "Loading"
                self.show_status(f"{first} {info.id} sharded over {names}…")
                self.run_worker(
                    self._load_sharded(info.id, nodes, copy), group="models", exit_on_error=False
                )

        question = f"Load {info.id} sharded?"
        detail = describe_plan(plan, self.figures.bytes)
        yes = f"Copy to {lacking}, then load" if copy else "Load"
        self.app.push_screen(Confirm(question, detail, yes=yes, no="Cancel"), answered)

    def _shard_plan(self, model_id: str) -> tuple[ShardPlan | None, list[str] | None]:
        """The node's own plan (fewest nodes first); when that is this node alone, the split
        over this node and every healthy paired peer, since `s` asks for a split. Returns the
        `nodes` the load must be asked with to get this same plan (plan None: no peer).
        """
        plan = self.node.shard_plan(model_id)
        if plan.world_size > 1:
            return plan, None
        peers = [p.name for p in self.node.cluster_view().peers if p.paired and p.health == "ok"]
        if not peers:
            return None, None
        nodes = [self._me, *peers]
        return self.node.shard_plan(model_id, nodes), nodes

    async def _load_sharded(
        self, model_id: str, nodes: list[str] | None, copy: bool = False
    ) -> None:
        try:
            plan = await self.node.load_sharded(model_id, nodes, copy=copy)
        except Exception as exc:
            log.warning("sharded load of %s failed", model_id, exc_info=True)
            self.show_status(f"Could not shard {model_id}: {describe_error(exc)}", error=True)
        else:
            names = ", ".join(s.name for s in plan.stages)
            self.show_status(f"Loaded {model_id} sharded over {names}.")
        self.select(model_id)
        self.redraw({"models"})

    def action_pull(self) -> None:
        info = self._selected_info()
        if info is None:
            return
        source = pull_source(info)
        if source is None:
            text = "its files are here already" if info.here else "no peer has its files"
            self.show_status(f"Nothing to copy for {info.id}: {text}.")
            return
        self.node.pull_model(info.id, source)
        self.show_status(f"Copying {info.id} from {source}…")
        self.select(info.id)

    def action_refresh_models(self) -> None:
        self.redraw({"models"})

    def action_import_gguf(self) -> None:
        self.app.push_screen(ImportDialog(self._run_import), self._imported)

    async def _run_import(
        self, request: ImportRequest, progress: Callable[[float, str], None]
    ) -> Path:
        return await self.node.import_gguf(
            request.gguf_path, request.model_id, dtype=request.dtype, progress=progress
        )

    def _imported(self, model_id: str | None) -> None:
        if model_id is not None:
            self.show_status(f"Imported {model_id}. Press l to load it.")
            self.select(model_id)
            self.redraw({"models"})
