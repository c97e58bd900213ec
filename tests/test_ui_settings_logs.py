"""Pilot tests of Settings (validation, round-trip that keeps comments, focus, exit codes) and
Logs (API requests, DEBUG, search, source filter) on a real node."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import aiohttp
from textual.widgets import Input, RichLog, Select

from salut_tui.node import Node
from salut_tui.ui.app import SalutApp
from salut_tui.ui.screens.logs import LogsScreen
from salut_tui.ui.screens.settings import SettingsScreen
from tests.helpers import ui_until
from tests.test_ui_app import make_node, screen_text

USER_FILE = """\
# My kitchen Mac: keep this comment.
node_name = "kitchen"  # shown to peers

# A model table the user wrote by hand.
[models]
"org/tiny" = "/somewhere/tiny"
"""


async def test_settings_refuses_bad_values_and_keeps_comments(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    node = make_node(tmp_path, tiny_model_path, tiny_model_id)
    config = tmp_path / "salut.toml"
    config.write_text(USER_FILE)
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("7")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SettingsScreen)

        screen.query_one("#set-host", Input).value = "not a host!"
        await pilot.press("ctrl+s")
        await pilot.pause()
        status = screen_text(app, "#settings-status")
        assert "Not saved" in status and "'host'" in status and "not a host!" in status
        assert config.read_text() == USER_FILE  # nothing written
        assert node.settings.host == "127.0.0.1"

        screen.query_one("#set-host", Input).value = "127.0.0.1"
        screen.query_one("#set-memory_headroom_gb", Input).value = "2.5"
        screen.query_one("#set-peers", Input).value = "10.0.0.2:7258, mini.local:7258"
        screen.query_one("#set-mode", Select).value = "cluster"
        screen.query_one("#set-log_level", Select).value = "DEBUG"
        screen.query_one("#set-models_dir", Input).focus()
        screen.query_one("#set-models_dir", Input).value = str(tmp_path / "models")
        await pilot.press("ctrl+s")
        await pilot.pause()
        text = config.read_text()
        # Only what changed is written; the user's comments and table stay where they were.
        assert text.startswith(USER_FILE.split("[models]")[0].rstrip("\n"))
        assert "# A model table the user wrote by hand." in text and '"org/tiny"' in text
        saved = tomllib.loads(text)
        assert saved["memory_headroom_gb"] == 2.5
        assert saved["peers"] == ["10.0.0.2:7258", "mini.local:7258"]
        assert saved["mode"] == "cluster" and saved["log_level"] == "DEBUG"
        assert saved["models_dir"] == str(tmp_path / "models")
        assert "host" not in saved and "port" not in saved  # the run's own values stay out
        status = screen_text(app, "#settings-status")
        assert "Restart Salut for the new mode and peers" in status
        assert node.settings.memory_headroom_gb == 2.5  # applied at once
        assert app.log_level == 10  # DEBUG records reach the Logs screen now

        # After saving the focus left the field: a screen key switches screens, types nothing.
        assert app.focused is None
        await pilot.press("1")
        await pilot.pause()
        assert app.current_mode == "overview"
        assert tomllib.loads(config.read_text())["models_dir"] == str(tmp_path / "models")

        bad_peer = "not a peer"
        await pilot.press("7")
        await pilot.pause()
        app.screen.query_one("#set-peers", Input).value = bad_peer
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "'peers'" in screen_text(app, "#settings-status")
        assert tomllib.loads(config.read_text())["peers"] == ["10.0.0.2:7258", "mini.local:7258"]


async def test_failed_start_exits_non_zero(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = make_node(tmp_path, tiny_model_path, tiny_model_id)
        node.settings.port = port
        app = SalutApp(node, preload=[])
        async with app.run_test(size=(80, 24)) as pilot:
            await ui_until(pilot, lambda: not app.is_running)
    assert app.return_code == 2


def log_text(app: SalutApp) -> str:
    view = app.screen.query_one("#log-view", RichLog)
    return "\n".join(line.text for line in view.lines)


async def test_logs_show_api_requests_debug_search_and_source(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    node: Node = make_node(tmp_path, tiny_model_path, tiny_model_id)
    app = SalutApp(node, preload=[tiny_model_id])
    async with app.run_test(size=(120, 40)) as pilot:
        await ui_until(pilot, lambda: node.engine.is_loaded(tiny_model_id))
        base = f"http://127.0.0.1:{node.port}/v1"
        body = {
            "model": tiny_model_id,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
        }
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/models") as response:
                assert response.status == 200
            await pilot.press("8")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, LogsScreen)
            await ui_until(pilot, lambda: '"GET /v1/models HTTP/1.1" 200' in log_text(app))
            assert "request for" not in log_text(app)  # a DEBUG record: not at INFO

            await pilot.press("v", "v", "v")  # INFO -> WARNING -> ERROR -> DEBUG
            await pilot.pause()
            assert screen.level == "DEBUG"
            async with http.post(f"{base}/chat/completions", json=body) as response:
                assert response.status == 200
            await ui_until(pilot, lambda: "POST /v1/chat/completions" in log_text(app))
            await ui_until(pilot, lambda: f"request for {tiny_model_id}" in log_text(app))

        # A source: only that logger's lines.
        screen.query_one("#log-source", Select).value = "aiohttp.access"
        await pilot.pause()
        text = log_text(app)
        assert "aiohttp.access:" in text and "salut_tui." not in text
        screen.query_one("#log-source", Select).value = "all sources"
        await pilot.pause()

        # `/` search: only lines holding the text; escape shows everything again.
        await pilot.press("slash", *"chat/comp")
        await pilot.pause()
        text = log_text(app)
        assert "POST /v1/chat/completions" in text
        assert "GET /v1/models" not in text and "serving the API" not in text
        await pilot.press("enter")  # keep the search, leave the field
        assert app.focused is None
        await pilot.press("escape")
        await pilot.pause()
        assert "GET /v1/models" in log_text(app)
