"""`?`: every key of the screen underneath and of the whole app, in one overlay.

Built from the bindings themselves (not a hand-written list), so a key added to a screen shows
here without anyone remembering to document it; keys that only work in some states (stop while
an answer is written) are listed too, since the overlay is where a user looks for them.
"""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

# What the bindings cannot say: keys handled by widgets or by Textual itself.
GENERAL_NOTES = (
    ("ctrl+c", "copy the selected text; with nothing selected, quit (asks first if needed)"),
    ("tab shift+tab", "next / previous field"),
)
# Listed once in a row of their own (screen keys) or among the notes (focus keys).
SKIPPED_ACTIONS = ("app.focus_next", "app.focus_previous", "focus_next", "focus_previous")


def key_rows(node: DOMNode) -> list[tuple[str, str]]:
    """(keys, description) for each action bound on `node`, keys of one action joined."""
    rows: dict[str, tuple[list[str], str]] = {}
    for key, binding in node._bindings:
        if (
            binding.system
            or binding.action in SKIPPED_ACTIONS
            or binding.action.startswith("show(")
            or (key.startswith("f") and key[1:].isdigit())
        ):
            continue
        keys, _ = rows.setdefault(binding.action, ([], describe(binding)))
        shown = binding.key_display or KEY_NAMES.get(key, key)
        if shown not in keys:
            keys.append(shown)
    return [(" ".join(keys), description) for keys, description in rows.values()]


# Key names as a user reads them (Textual's own display writes ctrl+s as ^s).
KEY_NAMES = {"question_mark": "?", "escape": "esc", "space": "space"}


def describe(binding: Binding) -> str:
    return binding.tooltip or binding.description or binding.action


def help_table(rows: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for keys, description in rows:
        table.add_row(escape(keys), escape(description))
    return table


class HelpOverlay(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(
        self, under: Screen, title: str, hint: str = "", screens: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        self.under = under
        self.title_text = title
        self.hint = hint
        self.screens = screens

    def compose(self) -> ComposeResult:
        app = self.app
        general = [
            (f"1 … {len(self.screens)}", ", ".join(self.screens)),
            (
                f"f1 … f{len(self.screens)}",
                "the same screens, even while a text field has the focus",
            ),
            *key_rows(app),
            *GENERAL_NOTES,
        ]
        with Vertical(id="help", classes="dialog"):
            yield Static(f"[b]Keys: {escape(self.title_text)}[/]   [dim]escape closes[/]")
            with VerticalScroll(id="help-scroll"):
                if self.hint:
                    yield Static(escape(self.hint), id="help-hint")
                yield Static("[b]This screen[/]", classes="help-section")
                yield Static(help_table(key_rows(self.under)), id="help-screen-keys")
                yield Static("[b]Everywhere[/]", classes="help-section")
                yield Static(help_table(general), id="help-app-keys")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()  # ↑↓ pgup pgdn scroll a long list

    def action_close(self) -> None:
        self.dismiss(None)
