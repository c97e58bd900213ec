"""The modal that asks which GGUF file to import and under which model id, then runs the import
with a progress bar. It stays open with its inputs when the import fails (the reason in words
under the fields) and closes with the new model's id when it succeeds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static

from salut_tui.ui.errors import describe_error

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImportRequest:
    gguf_path: Path
    model_id: str
    dtype: str


DTYPES = ("float32", "bfloat16", "float16")
Progress = Callable[[float, str], None]
RunImport = Callable[[ImportRequest, Progress], Awaitable[Path]]


class ImportDialog(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run: RunImport) -> None:
        super().__init__()
        self._run = run
        self._busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="import-dialog", classes="dialog"):
            yield Static("[b]Import a GGUF file[/] (llama family)")
            yield Label("File")
            yield Input(placeholder="/path/to/model.gguf", id="import-path")
            yield Label("Model id")
            yield Input(placeholder="org/name", id="import-id")
            yield Label("Weights as")
            yield Select(
                [(d, d) for d in DTYPES], value="float32", allow_blank=False, id="import-dtype"
            )
            yield ProgressBar(total=1.0, show_eta=False, id="import-progress")
            yield Static("", id="import-stage")
            yield Static("", id="import-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Import", variant="primary", id="import-go")
                yield Button("Cancel", id="import-cancel")

    def on_input_submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "import-go":
            self._submit()
        elif not self._busy:
            self.dismiss(None)

    def action_cancel(self) -> None:
        if not self._busy:  # a conversion under way cannot be stopped half-written
            self.dismiss(None)

    def _request(self) -> ImportRequest | None:
        error = self.query_one("#import-error", Static)
        typed = Path(self.query_one("#import-path", Input).value.strip())
        try:
            path = typed.expanduser()
        except RuntimeError:  # "~someone/..." for a user that does not exist
            path = typed
        model_id = self.query_one("#import-id", Input).value.strip()
        if not path.is_file():
            error.update(f"No such file: {escape(str(path))}")
            return None
        if model_id.count("/") != 1 or not all(model_id.split("/")):
            error.update("The model id must look like org/name")
            return None
        dtype = str(self.query_one("#import-dtype", Select).value)
        return ImportRequest(path, model_id, dtype)

    def _submit(self) -> None:
        if self._busy:
            return
        request = self._request()
        if request is not None:
            self._busy = True
            self.query_one("#import-error", Static).update("")
            self.query_one("#import-go", Button).disabled = True
            self.run_worker(self._import(request), group="import", exit_on_error=False)

    async def _import(self, request: ImportRequest) -> None:
        loop = asyncio.get_running_loop()
        bar = self.query_one("#import-progress", ProgressBar)
        stage = self.query_one("#import-stage", Static)

        def show(fraction: float, text: str) -> None:
            bar.update(progress=fraction)
            stage.update(f"{fraction * 100:.0f}% {escape(text)}")

        def progress(fraction: float, text: str) -> None:  # called on the engine's thread
            loop.call_soon_threadsafe(show, fraction, text)

        show(0.0, f"reading {request.gguf_path.name}")
        try:
            await self._run(request, progress)
        except Exception as exc:
            log.warning("import of %s failed", request.gguf_path, exc_info=True)
            self.query_one("#import-error", Static).update(
                f"Import failed: {escape(describe_error(exc))}"
            )
            stage.update("")
            bar.update(progress=0.0)
            self._busy = False
            go = self.query_one("#import-go", Button)
            # Disabled while busy, its "-active" press effect can outlive the import: a button
            # left "-active" ignores the next click, so the retry would do nothing.
            go.remove_class("-active")
            go.disabled = False
            return
        self.dismiss(request.model_id)
