"""The Chat screen as an editor (issue 12, point 3): a pasted multi-line prompt is kept whole,
ctrl+s and alt+enter send (enter makes a new line), a system prompt reaches the model, turns are
labelled with who served them and how fast, a model load shows its progress, and switching
models asks before the conversation is dropped."""

from __future__ import annotations

import re
from pathlib import Path

from textual import events
from textual.widgets import Input, Select, Static, TextArea

from salut_tui.node import Node
from salut_tui.ui.app import SalutApp
from salut_tui.ui.format import Figures
from salut_tui.ui.screens.chat import ChatScreen, progress_line
from salut_tui.ui.state import LoadState, StreamRecord
from salut_tui.ui.widgets.confirm import Confirm
from tests.helpers import ui_until
from tests.test_ui_app import make_node, screen_text


def prompt_tokens(app: SalutApp) -> int:
    found = re.search(r"(\d+) prompt \+", screen_text(app, "#chat-status"))
    assert found, screen_text(app, "#chat-status")
    return int(found.group(1))


async def open_chat(app: SalutApp, pilot, model_id: str) -> ChatScreen:
    await ui_until(pilot, lambda: app.node.engine.is_loaded(model_id))
    await pilot.press("4")
    await ui_until(pilot, lambda: isinstance(app.screen, ChatScreen))
    screen = app.screen
    assert isinstance(screen, ChatScreen)
    screen.query_one("#sampling-temperature", Input).value = "0"
    screen.query_one("#sampling-max_tokens", Input).value = "6"
    return screen


async def test_multiline_prompt_system_prompt_and_labelled_turns(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    app = SalutApp(make_node(tmp_path, tiny_model_path, tiny_model_id), preload=[tiny_model_id])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot, tiny_model_id)
        prompt = screen.query_one("#prompt", TextArea)
        # A paste arrives as one event with its newlines; enter adds another line.
        app.post_message(events.Paste("first line\nsecond line"))  # as the terminal sends it
        await pilot.pause()
        await pilot.press("enter", *"third")
        await pilot.press("ctrl+s")
        await ui_until(pilot, lambda: len(screen.history) == 2)
        assert screen.history[0]["content"] == "first line\nsecond line\nthird"
        assert prompt.text == ""
        without_system = prompt_tokens(app)
        labels = [str(s.render()) for s in screen.query(".turn-label").results(Static)]
        assert labels[0] == "You"
        assert labels[1].startswith(tiny_model_id)
        assert "served by local" in labels[1] and "6 tokens" in labels[1]
        assert "tok/s" in labels[1] and "length" in labels[1]

        # alt+enter sends too; the system prompt goes first and costs prompt tokens.
        await pilot.press("ctrl+n")
        screen.query_one("#system-prompt", Input).value = "You answer in one short sentence."
        prompt.focus()
        await pilot.press(*"first line")
        await pilot.press("alt+enter")
        await ui_until(pilot, lambda: len(screen.history) == 2)
        assert prompt_tokens(app) > without_system
        await pilot.press("escape", "y")  # leave the prompt; y copies the answer
        await ui_until(pilot, lambda: app.clipboard == screen.history[1]["content"])


async def test_switching_models_asks_before_a_new_chat(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    node: Node = make_node(tmp_path, tiny_model_path, tiny_model_id)
    node.settings.models = {**node.settings.models, "test/other": str(tiny_model_path)}
    app = SalutApp(node, preload=[tiny_model_id])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot, tiny_model_id)
        await pilot.press(*"hello", "ctrl+s")
        await ui_until(pilot, lambda: len(screen.history) == 2)
        select = screen.query_one("#chat-model", Select)

        select.value = "test/other"
        screen.redraw({"models"})  # the node's models changed meanwhile: still one question
        await ui_until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("n")  # keep the conversation, and its model
        await ui_until(pilot, lambda: select.value == tiny_model_id)
        await pilot.pause()
        assert isinstance(app.screen, ChatScreen) and len(screen.history) == 2

        select.value = "test/other"
        await ui_until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        # The status is the last thing the answer sets (the history empties before the old
        # turns are removed): wait for it, then look at the rest.
        await ui_until(
            pilot, lambda: "New chat with test/other" in screen_text(app, "#chat-status")
        )
        assert not screen.history and screen.model == "test/other"
        assert isinstance(app.screen, ChatScreen)  # one question, answered: none left
        assert not screen.query(".turn-label")


async def test_unloaded_model_loads_on_first_prompt(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    app = SalutApp(make_node(tmp_path, tiny_model_path, tiny_model_id), preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await ui_until(pilot, lambda: isinstance(app.screen, ChatScreen))
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        screen.query_one("#sampling-max_tokens", Input).value = "4"
        await pilot.press(*"hi", "ctrl+s")
        await ui_until(pilot, lambda: len(screen.history) == 2)
        # The engine's load events reached the UI state the status line reads from.
        assert app.state.models.loads[tiny_model_id].done
        assert "finish: length" in screen_text(app, "#chat-status")


def test_progress_line_says_loading_then_who_writes() -> None:
    figures = Figures()
    loading = LoadState(fraction=0.42, stage="reading weights")
    assert progress_line("m", None, loading, figures).startswith(
        "loading model m… 42% · reading weights"
    )
    assert progress_line("m", None, None, figures).startswith("waiting for m…")
    record = StreamRecord("r", "m", "playground", "hi", "peer-b", started=0.0)
    assert progress_line("m", record, None, figures).startswith(
        "m on peer-b is reading the prompt…"
    )
    record.completion_tokens = 5
    assert progress_line("m", record, None, figures).startswith("m on peer-b is writing… 5 tokens")
