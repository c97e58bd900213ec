"""The modal that asks which GGUF file to import and under which model id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static


@dataclass(frozen=True, slots=True)
class ImportRequest:
    gguf_path: Path
    model_id: str
    dtype: str


DTYPES = ("float32", "bfloat16", "float16")


class ImportDialog(ModalScreen[ImportRequest | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

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
            yield Static("", id="import-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Import", variant="primary", id="import-go")
                yield Button("Cancel", id="import-cancel")

    def on_input_submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "import-go":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        error = self.query_one("#import-error", Static)
        typed = Path(self.query_one("#import-path", Input).value.strip())
        try:
            path = typed.expanduser()
        except RuntimeError:  # "~someone/..." for a user that does not exist
            path = typed
        model_id = self.query_one("#import-id", Input).value.strip()
        if not path.is_file():
            error.update(f"No such file: {path}")
            return
        if model_id.count("/") != 1 or not all(model_id.split("/")):
            error.update("The model id must look like org/name")
            return
        dtype = str(self.query_one("#import-dtype", Select).value)
        self.dismiss(ImportRequest(path, model_id, dtype))
