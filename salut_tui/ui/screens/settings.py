"""Settings: edit the node's salut.toml from the UI; say which changes need a restart.

Only the fields changed here are written (`config.save_changes`), into the file as it is: the
user's comments and layout stay, and options given on the command line for this run (a port, a
data dir) do not leak into the file. The file as it would be is validated first; a bad value is
refused with the file and key named in the form, and nothing is written.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Select, SelectionList, Static

from salut_tui.config import LOG_LEVELS, ConfigError, default_config_path
from salut_tui.settings_change import RESTART_KEYS
from salut_tui.ui.screens.base import NodeScreen

MODES = ("cluster", "client-only", "solo")


class SettingsScreen(NodeScreen):
    SCREEN_TITLE = "Settings"
    HINT = "ctrl+s save · tab next field · escape leave a field"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", show=False, priority=True),
        Binding("escape", "leave_field", "Leave field", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._initial: dict[str, Any] = {}

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="settings"):
            yield from self._row(
                "Node name", Input(id="set-node_name", compact=True, placeholder="the host name")
            )
            yield from self._row("Host", Input(id="set-host", compact=True))
            yield from self._row("Port", Input(id="set-port", compact=True, type="integer"))
            with Horizontal(classes="setting-row"):
                yield Label("API key", classes="setting-label")
                yield Input(
                    id="set-api_key",
                    compact=True,
                    password=True,
                    placeholder="none: open to the LAN",
                )
            with Horizontal(classes="setting-row buttons"):
                yield Label("", classes="setting-label")
                yield Button("Generate", id="key-generate", compact=True)
                yield Button("Show", id="key-show", compact=True)
                yield Button("Clear", id="key-clear", compact=True)
            yield from self._row("Mode", self._select("mode", MODES))
            yield from self._row(
                "Peers",
                Input(id="set-peers", compact=True, placeholder="host:port, … (no multicast)"),
            )
            default = self.node.settings.default_model  # load_form adds the other models
            yield from self._row("Default model", self._select("default_model", [default]))
            yield from self._row(
                "Models dir",
                Input(id="set-models_dir", compact=True, placeholder="empty: <data dir>/models"),
            )
            yield from self._row(
                "Mem. headroom",
                Input(id="set-memory_headroom_gb", compact=True, placeholder="GiB kept free"),
            )
            yield from self._row("Log level", self._select("log_level", LOG_LEVELS[:4]))
            yield from self._row("Theme", self._select("theme", self.salut.theme_names))
            yield Label("Preload at start", classes="setting-label")
            yield SelectionList[str](id="set-preload")
            with Horizontal(classes="setting-row buttons"):
                yield Button("Save (ctrl+s)", id="settings-save", variant="primary", compact=True)
            yield Static("", id="settings-status")

    @staticmethod
    def _select(key: str, values: Iterable[str]) -> Select[str]:
        return Select([(v, v) for v in values], id=f"set-{key}", compact=True, allow_blank=False)

    @staticmethod
    def _row(label: str, widget) -> ComposeResult:
        with Horizontal(classes="setting-row"):
            yield Label(label, classes="setting-label")
            yield widget

    def on_mount(self) -> None:
        self.load_form()

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Save settings", "Write salut.toml", self.action_save)
        yield SystemCommand("Generate API key", "Make a new random API key", self._generate_key)

    def copy_offer(self) -> tuple[str, str] | None:
        key = self.query_one("#set-api_key", Input).value if self.is_mounted else ""
        key = key.strip() or self.node.settings.api_key
        return ("the API key", key) if key else None

    def unsaved_changes(self) -> str | None:
        if not self.is_mounted or not self._initial or self.form_values() == self._initial:
            return None
        return "the Settings screen has unsaved changes (ctrl+s saves)"

    # ---- form <-> settings -------------------------------------------------------------
    def load_form(self) -> None:
        settings = self.node.settings
        self.query_one("#set-node_name", Input).value = settings.node_name
        self.query_one("#set-host", Input).value = settings.host
        self.query_one("#set-port", Input).value = str(self.node.settings.port)
        self.query_one("#set-api_key", Input).value = settings.api_key
        self.query_one("#set-mode", Select).value = settings.mode
        self.query_one("#set-peers", Input).value = ", ".join(settings.peers)
        self.query_one("#set-models_dir", Input).value = settings.models_dir
        self.query_one("#set-memory_headroom_gb", Input).value = f"{settings.memory_headroom_gb:g}"
        self.query_one("#set-log_level", Select).value = settings.log_level
        models = [m.id for m in self.node.local_models()]  # scans the model directories: once
        model_select = self.query_one("#set-default_model", Select)
        model_select.set_options([(i, i) for i in dict.fromkeys([settings.default_model, *models])])
        model_select.value = settings.default_model
        if settings.theme in self.salut.theme_names:
            self.query_one("#set-theme", Select).value = settings.theme
        preload = self.query_one("#set-preload", SelectionList)
        preload.clear_options()
        for model_id in dict.fromkeys([*settings.preload, *models]):
            preload.add_option((model_id, model_id, model_id in settings.preload))
        self._initial = self.form_values()

    def form_values(self) -> dict[str, Any]:
        port_text = self.query_one("#set-port", Input).value.strip()
        return {
            "node_name": self.query_one("#set-node_name", Input).value.strip(),
            "host": self.query_one("#set-host", Input).value.strip(),
            "port": int(port_text) if port_text.lstrip("-").isdigit() else port_text,
            "api_key": self.query_one("#set-api_key", Input).value.strip(),
            "mode": self.query_one("#set-mode", Select).value,
            "peers": self.query_one("#set-peers", Input).value.replace(",", " ").split(),
            "default_model": self.query_one("#set-default_model", Select).value,
            "models_dir": self.query_one("#set-models_dir", Input).value.strip(),
            "memory_headroom_gb": _number(self.query_one("#set-memory_headroom_gb", Input).value),
            "log_level": self.query_one("#set-log_level", Select).value,
            "theme": self.query_one("#set-theme", Select).value,
            "preload": list(self.query_one("#set-preload", SelectionList).selected),
        }

    def config_path(self) -> Path:
        return self.node.config_path or default_config_path()

    def action_save(self) -> None:
        # Out of the field first: the screen's keys (1-8, q) must not type into an input.
        self.set_focus(None)
        values = self.form_values()
        changed = {
            k: v for k, v in values.items() if v != self._initial.get(k) and v is not Select.BLANK
        }
        if not changed:
            self.show_status("Nothing changed.")
            return
        self.run_worker(self._save(values, changed), group="settings", exit_on_error=False)

    async def _save(self, values: dict[str, Any], changed: dict[str, Any]) -> None:
        """The node saves into its own config file (an attached node: the file it runs with)
        and applies the live keys; this UI applies its own (theme, log level)."""
        path = self.config_path()
        try:
            saved = await self.node.change_settings(changed)
        except ConfigError as exc:
            self.show_status(f"Not saved: {exc}", error=True)
            return
        except OSError as exc:
            self.show_status(f"Cannot write {path}: {exc.strerror or exc}", error=True)
            return
        if "theme" in saved.live:
            self.app.theme = saved.settings.theme
        if "log_level" in saved.live:
            self.salut.apply_log_level(saved.settings.log_level)
        self._initial = values
        text = f"Saved {', '.join(sorted(changed))} to {saved.path}."
        restart = [k for k in RESTART_KEYS if k in changed]
        if restart:
            again = "the node" if self.node.attached else "Salut"
            text += f" Restart {again} for the new {' and '.join(restart)} to take effect."
        if "preload" in changed:
            text += " Preload applies at the next start."
        self.show_status(text, warning=bool(restart))

    def show_status(self, text: str, *, error: bool = False, warning: bool = False) -> None:
        status = self.query_one("#settings-status", Static)
        status.set_class(error, "error")
        status.set_class(warning, "warning")
        status.update(escape(text))

    # ---- widgets -----------------------------------------------------------------------
    def on_select_changed(self, event: Select.Changed) -> None:
        # Preview the theme at once; saving makes it stick.
        if event.select.id == "set-theme" and isinstance(event.value, str):
            self.app.theme = event.value

    def on_button_pressed(self, event: Button.Pressed) -> None:
        key = self.query_one("#set-api_key", Input)
        if event.button.id == "key-generate":
            self._generate_key()
        elif event.button.id == "key-show":
            key.password = not key.password
            event.button.label = "Show" if key.password else "Hide"
        elif event.button.id == "key-clear":
            key.value = ""
            self.show_status("API key cleared; save to make the API open to the LAN.")
        elif event.button.id == "settings-save":
            self.action_save()

    def _generate_key(self) -> None:
        self.query_one("#set-api_key", Input).value = "sk-salut-" + secrets.token_urlsafe(24)
        self.show_status("New API key generated; save to use it. Show reveals it.")

    def action_leave_field(self) -> None:
        self.set_focus(None)


def _number(text: str) -> float | str:
    """A float when the text is one; else the text, for validation to name the key."""
    try:
        return float(text.strip())
    except ValueError:
        return text.strip()
