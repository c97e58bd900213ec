"""Pilot tests of the terminal UI on a real node (tiny model, real engine, real sockets)."""

from __future__ import annotations

import json
import logging
import shutil
import tomllib
from pathlib import Path

import pytest
from openai import AsyncOpenAI
from textual.widgets import DataTable, Input, ProgressBar, RichLog, Static, TextArea

from salut_tui.config import Settings
from salut_tui.node import Node
from salut_tui.ui.app import SCREENS, SalutApp
from salut_tui.ui.messages import LogPosted, NodeChanged
from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.screens.chat import ChatScreen
from salut_tui.ui.screens.logs import LogsScreen
from salut_tui.ui.screens.models import ModelsScreen
from salut_tui.ui.screens.settings import SettingsScreen
from salut_tui.ui.screens.streams import StreamsScreen
from salut_tui.ui.state import LogEntry
from salut_tui.ui.widgets.confirm import Confirm
from tests.helpers import ui_until

SCREEN_CLASSES = {
    "overview": "OverviewScreen",
    "models": "ModelsScreen",
    "streams": "StreamsScreen",
    "chat": "ChatScreen",
    "peers": "PeersScreen",
    "pairing": "PairingScreen",
    "settings": "SettingsScreen",
    "logs": "LogsScreen",
}


def make_node(tmp_path: Path, model_path: Path, model_id: str, **overrides) -> Node:
    settings = Settings(
        models={model_id: str(model_path)},
        port=0,
        host="127.0.0.1",
        data_dir=str(tmp_path / "data"),
        node_name="test-node",
        default_model=model_id,
        mode="solo",
        **overrides,
    )
    return Node(settings, config_path=tmp_path / "salut.toml")


def screen_text(app: SalutApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def long_answer(screen) -> None:
    """Sampling under which the tiny model answers with hundreds of tokens (greedy decoding
    never picks its end token; the context caps it), long enough to be stopped half way."""
    for field, value in (("temperature", "0"), ("max_tokens", "16000")):
        screen.query_one(f"#sampling-{field}", Input).value = value


async def show(pilot, key: str) -> None:  # type: ignore[no-untyped-def]
    """Press a screen's key and wait until that screen is current and composed (a switch takes
    a few loop turns, more on a busy machine)."""
    mode = next(m for m, k, _title in SCREENS if k == key)
    app = pilot.app
    await pilot.press(key)
    await ui_until(
        pilot,
        lambda: type(app.screen).__name__ == SCREEN_CLASSES[mode] and app.screen.is_mounted,
    )


@pytest.fixture(scope="module")
def long_context_model(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a 16k context: greedy answers then run for thousands of tokens
    (seconds), so a test can stop one half way however fast or busy the machine is. Pilot
    waits for the screen to be idle, which a 500-token answer can outlast on a fast machine."""
    path = tmp_path_factory.mktemp("long") / "tiny-long"
    shutil.copytree(tiny_model_path, path)
    config = json.loads((path / "config.json").read_text())
    config["max_position_embeddings"] = 16384
    (path / "config.json").write_text(json.dumps(config))
    tok_config = json.loads((path / "tokenizer_config.json").read_text())
    tok_config["model_max_length"] = 16384
    (path / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return path


@pytest.fixture
def node(tmp_path: Path, long_context_model: Path, tiny_model_id: str) -> Node:
    return make_node(tmp_path, long_context_model, tiny_model_id)


async def test_every_screen_has_a_key_and_a_palette_command(node: Node) -> None:
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        for mode, key, _title in SCREENS:
            await pilot.press(key)
            # A screen switch completes over a few loop turns, more on a busy machine.
            await ui_until(
                pilot, lambda mode=mode: type(app.screen).__name__ == SCREEN_CLASSES[mode]
            )
            if mode == "chat":
                await pilot.press("escape")  # leave the prompt, as the hint line says
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for _mode, _key, title in SCREENS:
            # "Show Logs" on Logs would do nothing, so the palette does not offer it.
            assert (f"Show {title}" in titles) == (title != "Logs")
        # From inside the chat prompt, digits type text but F-keys still switch screens.
        await pilot.press("4")
        await ui_until(pilot, lambda: isinstance(app.focused, TextArea))
        await pilot.press("2")
        await pilot.pause()
        assert isinstance(app.screen, ChatScreen)
        await pilot.press("f3")
        await ui_until(pilot, lambda: isinstance(app.screen, StreamsScreen))


async def test_a_tick_event_or_log_line_after_the_screens_are_gone_draws_nothing(
    node: Node,
) -> None:
    """The once-a-second tick, a node event and a log line can all arrive while the app closes,
    after its screens are gone: each does nothing (it raised ScreenStackError, failing runs on
    a loaded machine at random)."""
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await ui_until(pilot, lambda: isinstance(app.screen, NodeScreen))
    assert not app.screen_stack  # closed: what arrives now finds no screen
    app._tick()
    app.on_node_changed(NodeChanged("models"))
    app.on_log_posted(LogPosted(LogEntry(0.0, logging.INFO, "INFO", "salut", "late line")))
    assert app.state.logs[-1].message == "late line"  # kept for the log history all the same


async def test_load_model_progress_bar_finishes(node: Node, tiny_model_id: str) -> None:
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, "2")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        table = screen.query_one("#model-table", DataTable)
        table.move_cursor(row=table.get_row_index(tiny_model_id))
        await pilot.press("l")
        await ui_until(
            pilot, lambda: node.engine is not None and node.engine.is_loaded(tiny_model_id)
        )
        await ui_until(pilot, lambda: bool(screen.query(ProgressBar)))
        await ui_until(pilot, lambda: screen.query_one(ProgressBar).percentage == 1.0)
        assert str(table.get_row(tiny_model_id)[2]) == "[green]here[/]"  # loaded on this node
        assert "Loaded" in screen_text(app, "#models-status")
        await pilot.press("u")
        await ui_until(pilot, lambda: not node.engine.is_loaded(tiny_model_id))


async def test_failed_load_is_a_message_not_a_traceback(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    node = make_node(tmp_path, tiny_model_path, tiny_model_id)
    node.settings.models = {**node.settings.models, "test/broken": str(broken)}
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, "2")
        table = app.screen.query_one("#model-table", DataTable)
        table.move_cursor(row=table.get_row_index("test/broken"))
        await pilot.press("l")
        status = app.screen.query_one("#models-status", Static)
        await ui_until(pilot, lambda: status.has_class("error"))
        assert "Could not load test/broken" in str(status.render())
        assert "Traceback" not in str(status.render())
        assert app.is_running


async def test_openai_client_stream_shows_on_streams_screen(node: Node, tiny_model_id: str) -> None:
    app = SalutApp(node, preload=[tiny_model_id])
    async with app.run_test(size=(120, 40)) as pilot:
        await ui_until(pilot, lambda: node.engine.is_loaded(tiny_model_id))
        await pilot.press("3")
        client = AsyncOpenAI(base_url=f"http://127.0.0.1:{node.port}/v1", api_key="unused")
        stream = await client.chat.completions.create(
            model=tiny_model_id,
            messages=[{"role": "user", "content": "Hello from the openai client"}],
            max_tokens=12,
            temperature=0,
            stream=True,
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await client.close()
        records = app.state.streams.records
        await ui_until(pilot, lambda: any(not r.live for r in records.values()))
        record = next(iter(records.values()))
        assert record.text == "".join(pieces)
        assert record.completion_tokens == 12
        table = app.screen.query_one("#stream-table", DataTable)
        await ui_until(
            pilot, lambda: table.row_count == 1 and table.get_row(record.request_id)[5] == "length"
        )
        row = table.get_row(record.request_id)
        # The figures come first (they fit at 80 columns), then the client and the prompt.
        assert row[0] == "[green]✓[/]" and row[2] == "12"
        assert row[6].startswith("127.0.0.1")
        assert "Hello from the openai" in row[7]
        await pilot.press("enter")  # reopen the finished stream in full
        await pilot.pause()
        assert record.request_id in str(app.screen.query_one("#detail-summary", Static).render())
        await pilot.press("escape")


async def test_chat_playground_answers_and_escape_stops(node: Node, tiny_model_id: str) -> None:
    app = SalutApp(node, preload=[tiny_model_id])
    async with app.run_test(size=(80, 24)) as pilot:
        await ui_until(pilot, lambda: node.engine.is_loaded(tiny_model_id))
        await show(pilot, "4")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        screen.query_one("#sampling-temperature", Input).value = "0"
        screen.query_one("#sampling-max_tokens", Input).value = "8"
        await pilot.press(*"hello", "ctrl+s")
        await ui_until(pilot, lambda: len(screen.history) == 2)
        assert screen.history[0] == {"role": "user", "content": "hello"}
        assert "finish: length" in screen_text(app, "#chat-status")
        assert "8 completion tokens" in screen_text(app, "#chat-status")
        # The playground's request went through the node like any API request.
        assert [r.client for r in app.state.streams.records.values()] == ["playground"]

        await pilot.press("ctrl+n")
        long_answer(screen)
        await pilot.press(*"go on", "ctrl+s")
        await ui_until(pilot, lambda: node.stats().in_flight == 1)
        await ui_until(
            pilot,
            lambda: any(
                r.completion_tokens > 2 for r in app.state.streams.records.values() if r.live
            ),
        )
        await pilot.press("escape")
        await ui_until(pilot, lambda: node.stats().in_flight == 0)
        assert screen_text(app, "#chat-status") == "stopped"
        last = list(app.state.streams.records.values())[-1]
        await ui_until(pilot, lambda: not last.live)
        assert last.status == "cancelled"


async def test_bad_sampling_value_is_reported(node: Node, tiny_model_id: str) -> None:
    app = SalutApp(node, preload=[tiny_model_id])
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, "4")
        app.screen.query_one("#sampling-temperature", Input).value = "3"
        await pilot.press(*"hi", "ctrl+s")
        await pilot.pause()
        assert "temperature must be between 0 and 2" in screen_text(app, "#chat-status")
        assert not app.state.streams.records


async def test_settings_saved_to_file_and_restart_announced(node: Node, tmp_path: Path) -> None:
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, "7")
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        screen.query_one("#set-node_name", Input).value = "kitchen-mac"
        await pilot.press("ctrl+s")
        await pilot.pause()
        saved = tomllib.loads((tmp_path / "salut.toml").read_text())
        assert saved["node_name"] == "kitchen-mac"
        assert "port" not in saved  # only what changed is written: not the run's own --port 0
        assert node.settings.node_name == "kitchen-mac"
        assert "Restart" not in screen_text(app, "#settings-status")

        screen.query_one("#set-port", Input).value = "8123"
        await pilot.click("#key-generate")
        await pilot.press("ctrl+s")
        await pilot.pause()
        saved = tomllib.loads((tmp_path / "salut.toml").read_text())
        assert saved["port"] == 8123
        assert saved["api_key"].startswith("sk-salut-")
        assert node.settings.api_key == saved["api_key"]  # the API checks it from now on
        assert "Restart Salut for the new port" in screen_text(app, "#settings-status")


async def test_theme_files_are_selectable_and_saved(node: Node, tmp_path: Path) -> None:
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        assert {"salut-night", "salut-paper"} <= set(app.available_themes)
        await show(pilot, "7")
        from textual.widgets import Select

        app.screen.query_one("#set-theme", Select).value = "salut-paper"
        await pilot.pause()
        assert app.theme == "salut-paper"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert tomllib.loads((tmp_path / "salut.toml").read_text())["theme"] == "salut-paper"


async def test_logs_screen_filters_by_level(node: Node) -> None:
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        logger = logging.getLogger("salut_tui.tests.ui")
        logger.info("an ordinary event")
        logger.warning("something to look at")
        await show(pilot, "8")
        screen = app.screen
        assert isinstance(screen, LogsScreen)
        view = screen.query_one("#log-view", RichLog)
        text = "\n".join(line.text for line in view.lines)
        assert "an ordinary event" in text and "something to look at" in text
        assert "serving the API" in text  # the node's own record from start()
        await pilot.press("v", "v")  # INFO -> WARNING -> ERROR
        await pilot.pause()
        assert screen.level == "ERROR"
        assert not any("something to look at" in line.text for line in view.lines)
        await pilot.press("v", "v", "v")  # -> DEBUG -> INFO -> WARNING
        await pilot.pause()
        text = "\n".join(line.text for line in view.lines)
        assert "something to look at" in text and "an ordinary event" not in text


async def test_quit_finishes_streams_and_unloads(node: Node, tiny_model_id: str) -> None:
    app = SalutApp(node, preload=[tiny_model_id])
    async with app.run_test(size=(80, 24)) as pilot:
        await ui_until(pilot, lambda: node.engine.is_loaded(tiny_model_id))
        await show(pilot, "4")
        long_answer(app.screen)
        await pilot.press(*"go on", "ctrl+s")
        await ui_until(pilot, lambda: node.stats().in_flight == 1)
        # ctrl+c from the prompt with nothing selected means quit; mid-answer it asks first.
        await pilot.press("ctrl+c")
        await ui_until(pilot, lambda: isinstance(app.screen, Confirm))
        assert "1 stream in flight" in str(app.screen.query_one("#confirm-detail", Static).render())
        await pilot.press("y")
        await ui_until(pilot, lambda: not app.is_running)
    assert app.return_code == 0
    assert node.engine.loaded() == []
    records = list(app.state.streams.records.values())
    assert records and all(not r.live for r in records)
