"""Keys a new user reaches for (issue 12, points 2 and 8): `?` help, escape closing the Keys
panel, a palette that finds every screen's commands, copy keys (OSC 52 through Textual's
clipboard), and quitting that asks before losing anything and shows that it is stopping."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from textual.widgets import HelpPanel, Input, Static
from textual.widgets.input import Selection

from salut_tui.ui.app import SalutApp
from salut_tui.ui.help import HelpOverlay
from salut_tui.ui.quitting import Stopping
from salut_tui.ui.screens.logs import LogsScreen
from salut_tui.ui.screens.pairing import PairingScreen
from salut_tui.ui.screens.settings import SettingsScreen
from salut_tui.ui.widgets.confirm import Confirm
from tests.helpers import free_port, ui_until
from tests.test_ui_app import make_node, screen_text
from tests.test_ui_cluster import cluster_node


def overlay_text(app: SalutApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_question_mark_lists_every_key_of_the_screen(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    app = SalutApp(make_node(tmp_path, tiny_model_path, tiny_model_id), preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "question_mark")
        await ui_until(pilot, lambda: isinstance(app.screen, HelpOverlay))
        await pilot.pause()
        # The overlay is drawn from the bindings: the Streams keys and the app's keys.
        screen_keys = _table_text(app, "#help-screen-keys")
        assert "Clear finished" in screen_keys and "Open the stream" in screen_keys
        app_keys = _table_text(app, "#help-app-keys")
        for wanted in ("Quit", "Copy", "Every key of this screen", "ctrl+p", "f1"):
            assert wanted in app_keys
        await pilot.press("escape")
        await ui_until(pilot, lambda: not isinstance(app.screen, HelpOverlay))

        # Chat's keys include those that only work while an answer is written.
        await pilot.press("4")
        await pilot.pause()
        await pilot.press("escape", "question_mark")  # leave the prompt first: ? types there
        await ui_until(pilot, lambda: isinstance(app.screen, HelpOverlay))
        chat_keys = _table_text(app, "#help-screen-keys")
        for wanted in ("Send", "ctrl+s", "Stop", "New chat"):
            assert wanted in chat_keys


def _table_text(app: SalutApp, selector: str) -> str:
    """The text a Static holding a rich Table draws, as the terminal would show it."""
    widget = app.screen.query_one(selector, Static)
    console = Console(width=120, color_system=None)
    with console.capture() as capture:
        console.print(widget.content)
    return capture.get()


async def test_escape_closes_the_keys_panel(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    app = SalutApp(make_node(tmp_path, tiny_model_path, tiny_model_id), preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        app.action_show_help_panel()  # the palette's "Keys" command
        await ui_until(pilot, lambda: bool(app.screen.query(HelpPanel)))
        await pilot.press("escape")
        await ui_until(pilot, lambda: not app.screen.query(HelpPanel))
        assert app.is_running


async def test_palette_finds_every_screens_commands_and_only_useful_ones(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    app = SalutApp(make_node(tmp_path, tiny_model_path, tiny_model_id), preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        # From Overview: the commands of Models, Settings, Logs (screens not shown yet).
        for title in ("Load model", "Import GGUF", "Save settings", "Logs: ERROR and above"):
            assert title in commands
        # Nothing that would do nothing: a solo node has no pairing; the screen shown is not
        # offered again; no stream to open, no chat to stop.
        for title in ("New pairing code", "Unpair peer", "Show Overview", "Open stream"):
            assert title not in commands
        assert "Stop generation" not in commands
        # Choosing another screen's command shows that screen and does it there.
        await commands["Logs: ERROR and above"].callback()
        await ui_until(pilot, lambda: isinstance(app.screen, LogsScreen))
        await ui_until(pilot, lambda: app.screen.level == "ERROR")  # type: ignore[attr-defined]


async def test_copy_keys_api_key_and_selected_text(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    node = make_node(tmp_path, tiny_model_path, tiny_model_id, api_key="sk-salut-copy-me")
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("7")
        await ui_until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        await pilot.press("y")  # the copy key: this screen offers the API key
        await ui_until(pilot, lambda: app.clipboard == "sk-salut-copy-me")

        # ctrl+c with text selected in a field copies it and does not quit.
        name = app.screen.query_one("#set-node_name", Input)
        name.focus()
        await pilot.pause()  # focusing a field selects all of it; then select a part
        name.selection = Selection(0, len("test"))
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.clipboard == "test"
        assert app.is_running and not isinstance(app.screen, Confirm)


async def test_copy_key_on_pairing_copies_the_code(tmp_path: Path) -> None:
    node = cluster_node(tmp_path, "alone", free_port(), free_port())
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await ui_until(pilot, lambda: isinstance(app.screen, PairingScreen))
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert "New pairing code" in commands  # offered once there is a cluster
        await pilot.press("c")
        await ui_until(pilot, lambda: node.cluster.pairing_status().code)  # type: ignore[union-attr]
        code = node.cluster.pairing_status().code  # type: ignore[union-attr]
        await pilot.press("y")
        await ui_until(pilot, lambda: app.clipboard == code)


async def test_quit_asks_about_unsaved_settings_then_shows_stopping(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    app = SalutApp(make_node(tmp_path, tiny_model_path, tiny_model_id), preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("7")
        await ui_until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        app.screen.query_one("#set-node_name", Input).value = "renamed"
        await pilot.press("escape", "q")
        await ui_until(pilot, lambda: isinstance(app.screen, Confirm))
        assert "unsaved changes" in screen_text(app, "#confirm-detail")
        await pilot.press("n")  # stay
        await ui_until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        assert app.is_running
        await pilot.press("ctrl+q")
        await ui_until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await ui_until(pilot, lambda: isinstance(app.screen, Stopping) or not app.is_running)
    assert app.return_code == 0


async def test_ctrl_c_with_nothing_to_lose_quits_at_once(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    app = SalutApp(make_node(tmp_path, tiny_model_path, tiny_model_id), preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+c")
        await ui_until(pilot, lambda: not app.is_running)
    assert app.return_code == 0


async def test_palette_opens_the_help_even_from_a_text_field(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    app = SalutApp(make_node(tmp_path, tiny_model_path, tiny_model_id), preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")  # the chat prompt has the focus: ? would type a question mark
        await ui_until(pilot, lambda: app.screen.__class__.__name__ == "ChatScreen")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"keys of this", "enter")
        await ui_until(pilot, lambda: isinstance(app.screen, HelpOverlay))
        assert "Send" in _table_text(app, "#help-screen-keys")
