"""Live streams on the Streams screen (issue 12, point 1): the preview and the detail view follow
the end like a log tail, scrolling up pauses, `end` resumes; the figures fit at 80 columns;
completed, cancelled and failed streams wear different marks."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

import pytest
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from salut_tui.engine.types import GenerationRequest, SamplingParams
from salut_tui.events import StreamFinished, StreamStarted, StreamTokensReceived
from salut_tui.node import Node
from salut_tui.ui.app import SalutApp
from salut_tui.ui.screens.stream_detail import StreamDetail
from salut_tui.ui.screens.streams import StreamsScreen
from tests.helpers import ui_until
from tests.test_ui_app import long_context_model, make_node  # noqa: F401  (a fixture)


@pytest.fixture
def live_node(tmp_path: Path, long_context_model: Path, tiny_model_id: str) -> Node:  # noqa: F811
    return make_node(tmp_path, long_context_model, tiny_model_id)


async def consume(node: Node, request: GenerationRequest) -> None:
    async with aclosing(node.generate(request)) as chunks:
        async for _chunk in chunks:
            pass


def long_request(model: str) -> GenerationRequest:
    """Greedy decoding of the tiny model never ends by itself: thousands of tokens (seconds)."""
    return GenerationRequest(
        model=model,
        messages=({"role": "user", "content": "go on"},),
        sampling=SamplingParams(temperature=0, max_tokens=16000),
        client="test-client",
    )


def at_end(scroll: VerticalScroll) -> bool:
    return scroll.max_scroll_y > 3 and scroll.scroll_y == scroll.max_scroll_y


async def test_live_stream_follows_the_end_and_pauses_when_scrolled_up(
    live_node: Node, tiny_model_id: str
) -> None:
    node = live_node
    app = SalutApp(node, preload=[tiny_model_id])
    async with app.run_test(size=(80, 24)) as pilot:
        await ui_until(pilot, lambda: node.engine.is_loaded(tiny_model_id))
        await pilot.press("3")
        await ui_until(pilot, lambda: isinstance(app.screen, StreamsScreen))
        task = asyncio.create_task(consume(node, long_request(tiny_model_id)))
        try:
            # The 80x24 preview shows the latest lines, not the first ones.
            preview = app.screen.query_one("#stream-preview", VerticalScroll)
            await ui_until(pilot, lambda: at_end(preview))

            await pilot.press("enter")
            await ui_until(pilot, lambda: isinstance(app.screen, StreamDetail))
            scroll = app.screen.query_one("#detail-scroll", VerticalScroll)
            keys = app.screen.query_one("#detail-keys", Static)
            await ui_until(pilot, lambda: at_end(scroll))
            grown = scroll.max_scroll_y
            await ui_until(pilot, lambda: scroll.max_scroll_y > grown + 2 and at_end(scroll))
            assert "following" in str(keys.render())

            # Scrolling up stops following: the text stays under the reader while it grows.
            await pilot.press("pageup")
            await ui_until(pilot, lambda: scroll.scroll_y == scroll.scroll_target_y)
            held, grown = scroll.scroll_y, scroll.max_scroll_y
            assert held < grown
            await ui_until(pilot, lambda: scroll.max_scroll_y > grown + 2)
            assert scroll.scroll_y == held
            await ui_until(pilot, lambda: "paused" in str(keys.render()))

            # end: back to the end, following again.
            await pilot.press("end")
            await ui_until(pilot, lambda: at_end(scroll))
            grown = scroll.max_scroll_y
            await ui_until(pilot, lambda: scroll.max_scroll_y > grown + 2 and at_end(scroll))
            assert app.state.streams.live_count() == 1
        finally:
            task.cancel()
            await ui_until(pilot, lambda: app.state.streams.live_count() == 0)
        await ui_until(
            pilot, lambda: "cancelled" in str(app.screen.query_one("#detail-summary").render())
        )


def publish_streams(node: Node) -> None:
    """Four streams as the node reports them: completed, cancelled, failed, still live."""
    for request_id, finish in (
        ("req-done", "length"),
        ("req-cancelled", "cancelled"),
        ("req-failed", "error"),
        ("req-live", None),
    ):
        node.events.publish(
            StreamStarted(request_id, "salut-test/tiny-llama", "127.0.0.1:50000", "hi", 0.0)
        )
        node.events.publish(StreamTokensReceived(request_id, "Bonjour", 1))
        node.events.publish(StreamTokensReceived(request_id, " tout le monde", 2))
        if finish is not None:
            error = "the model ran out of memory" if finish == "error" else None
            node.events.publish(StreamFinished(request_id, finish, 3, 2, 0.05, 40.0, error))


async def test_marks_and_figures_fit_at_80_columns(
    live_node: Node,
) -> None:
    node = live_node
    app = SalutApp(node, preload=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await ui_until(pilot, lambda: isinstance(app.screen, StreamsScreen))
        publish_streams(node)
        table = app.screen.query_one("#stream-table", DataTable)
        await ui_until(pilot, lambda: table.row_count == 4)
        marks = {key: table.get_row(key)[0] for key in ("req-done", "req-cancelled", "req-failed")}
        assert len(set(marks.values())) == 3  # three different marks
        assert "✓" in marks["req-done"] and "⊘" in marks["req-cancelled"]
        assert "✗" in marks["req-failed"] and "●" in table.get_row("req-live")[0]
        # Mark, Model, Tokens, TTFT, tok/s and Finish are on screen at 80 columns.
        columns = list(table.columns.values())
        assert [str(c.label) for c in columns[:6]] == [
            "",
            "Model",
            "Tokens",
            "TTFT",
            "tok/s",
            "Finish",
        ]
        width = sum(c.get_render_width(table) for c in columns[:6])
        assert width <= table.scrollable_content_region.width
