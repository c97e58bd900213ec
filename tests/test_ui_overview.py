"""The Overview's history graphs and its first-start view, on a real node; and the conversion
of the default model reporting its progress through the engine's events."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from textual.widgets import ProgressBar, Sparkline, Static

from salut_tui.config import DEFAULT_MODEL
from salut_tui.engine import default_model
from salut_tui.events import CONVERTING, ModelLoaded, ModelLoadProgressed, ModelLoadStarted
from salut_tui.ui.app import SalutApp
from salut_tui.ui.history import SELF, WINDOW
from salut_tui.ui.widgets.history import NodeHistory
from tests.engine_helpers import make_engine
from tests.helpers import ui_until
from tests.test_gguf_import import load_weights, write_llama_gguf
from tests.test_ui_app import make_node


async def test_history_sparklines_follow_the_node(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    node = make_node(tmp_path, tiny_model_path, tiny_model_id)
    app = SalutApp(node, preload=[tiny_model_id])
    async with app.run_test(size=(120, 40)) as pilot:
        await ui_until(pilot, lambda: node.engine.is_loaded(tiny_model_id))
        body = {
            "model": tiny_model_id,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 200,
            "temperature": 0,
        }
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{node.port}/v1/chat/completions"
            async with http.post(url, json=body) as response:
                assert response.status == 200
        await ui_until(pilot, lambda: SELF in app.state.history.nodes)  # the first 1 Hz sample
        series = app.state.history.nodes[SELF]
        # Sampled once a second from the node's figures: the rate it reported shows up.
        await ui_until(pilot, lambda: max(series.rate, default=0) > 0)
        assert len(series.memory_used) >= 1 and series.memory_total
        card = app.screen.query_one("#history-card")
        [widget] = card.query(NodeHistory)
        await ui_until(pilot, lambda: any(widget.query_one(".history-rate", Sparkline).data))
        assert "this node" in str(widget.query_one(".history-name", Static).render())
        memory = str(widget.query_one(".history-value-memory_used", Static).render())
        assert " of " in memory
    assert series.rate.maxlen == WINDOW  # bounded: five minutes at 1 Hz


async def test_first_start_shows_the_conversion(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    node = make_node(tmp_path, tiny_model_path, tiny_model_id)
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not app.screen.query_one("#loads-card").display
        # The events the engine publishes while it converts the bundled default model.
        node.events.publish(ModelLoadStarted(DEFAULT_MODEL))
        node.events.publish(
            ModelLoadProgressed(DEFAULT_MODEL, 0.45, f"{CONVERTING}converted blk.3.attn_q.weight")
        )
        card = app.screen.query_one("#loads-card")
        await ui_until(pilot, lambda: card.display)
        assert card.border_title == "First start: preparing the default model"
        text = str(app.screen.query_one("#load-text", Static).render())
        assert "Converting" in text and "45%" in text and "blk.3.attn_q" in text
        assert "0% starting" not in text
        assert app.screen.query_one("#load-bar", ProgressBar).progress == pytest.approx(45)
        node.events.publish(ModelLoadProgressed(DEFAULT_MODEL, 0.5, "loading weights"))
        await ui_until(pilot, lambda: card.border_title == "Loading")
        node.events.publish(ModelLoaded(DEFAULT_MODEL, 1))
        await ui_until(pilot, lambda: not card.display)


async def test_default_model_conversion_reports_progress(
    tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first load of the default model converts its GGUF (here the tiny model's, standing in
    for the bundled file) and says how far the conversion is, then loads it."""
    gguf = write_llama_gguf(
        tiny_model_path, tmp_path / "bundle.gguf", load_weights(tiny_model_path), {}
    )
    monkeypatch.setattr(default_model, "bundled_gguf_path", lambda: gguf)
    engine, seen = make_engine(tmp_path, "unused/id", tiny_model_path)
    await engine.start()
    try:
        await engine.load(DEFAULT_MODEL)
    finally:
        await engine.stop()
    stages = [e.stage for e in seen if isinstance(e, ModelLoadProgressed)]
    converting = [s for s in stages if s.startswith(CONVERTING)]
    assert len(converting) > 3 and any("converted" in s for s in converting)
    assert stages.index(converting[-1]) < stages.index("loading weights")  # convert, then load
    assert any(isinstance(e, ModelLoaded) and e.model_id == DEFAULT_MODEL for e in seen)
