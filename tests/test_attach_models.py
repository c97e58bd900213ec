"""The Models screen of an attached UI does what it does in-process, on a node that runs on its
own loop (as in its own process): load and unload on a paired peer, copy a model from the peer
with live progress (TransferChanged events on the wire), the idle-unload countdown, and a GGUF
import with progress that the node converts."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, ProgressBar, Static

from salut_tui.config import Settings
from salut_tui.node import Node
from salut_tui.ui.app import SalutApp
from salut_tui.ui.screens.import_dialog import ImportDialog
from salut_tui.ui.screens.models import ModelsScreen
from salut_tui.ui.widgets.progress_rows import TransferRow
from tests.attached import NodeLoop, attach
from tests.helpers import ui_until, until
from tests.test_cluster_node import pair
from tests.test_gguf_import import load_weights, write_llama_gguf
from tests.test_ui_models import MODEL, make, row


@pytest.fixture
async def cluster(tmp_path: Path, tiny_model_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """A (files of nothing) and B (the model, loaded), paired, on their own loop."""
    loop = NodeLoop()
    a = await loop.start(lambda: make(tmp_path, "A"))

    def make_b() -> Node:
        b = make(tmp_path, "B")
        shutil.copytree(tiny_model_path, b.settings.models_path() / MODEL)
        return b

    b = await loop.start(make_b, [MODEL])
    await until(lambda: b.engine is not None and b.engine.is_loaded(MODEL), 30)
    await loop.run(pair(a, b))
    yield a, b
    await loop.run(a.stop())
    await loop.run(b.stop())
    loop.close()


async def test_attached_models_act_on_the_peer_copy_here_and_count_down(
    cluster: tuple[Node, Node],
) -> None:
    a, b = cluster
    remote = await attach(a)
    app = SalutApp(remote, start_node=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        table = screen.query_one("#model-table", DataTable)
        await ui_until(pilot, lambda: MODEL in table.rows and "B" in row(table, MODEL)[2], 15)
        assert row(table, MODEL)[1] == "B"  # its files are on B only
        table.move_cursor(row=table.get_row_index(MODEL))
        status = screen.query_one("#models-status", Static)
        await pilot.press("u")  # unloads it on B: A asks B over the link
        await ui_until(pilot, lambda: not b.engine.is_loaded(MODEL), 15)  # type: ignore[union-attr]
        await ui_until(pilot, lambda: f"Unloaded {MODEL} on B" in str(status.render()))
        await pilot.press("l")  # loads it on B: the files are not on A
        await ui_until(pilot, lambda: b.engine.is_loaded(MODEL), 15)  # type: ignore[union-attr]
        await ui_until(pilot, lambda: f"Loaded {MODEL} on B" in str(status.render()))
        assert not a.engine.is_loaded(MODEL)  # type: ignore[union-attr]

        await pilot.press("p")  # copy it to A: a progress row fed by the node's events
        await ui_until(pilot, lambda: bool(screen.query(TransferRow)), 15)
        transfer = screen.query_one(TransferRow)
        assert transfer.view.kind == "pull" and transfer.view.model == MODEL
        await ui_until(pilot, lambda: transfer.view.state == "done", 30)
        assert transfer.query_one(ProgressBar).percentage == 1.0
        assert transfer.view.total > 0 and transfer.view.done == transfer.view.total
        assert (a.settings.models_path() / MODEL / "config.json").is_file()
        await ui_until(pilot, lambda: row(table, MODEL)[1] == "here, B", 15)

        await pilot.press("l")  # now here: loads on A, the cursor stays on it
        await ui_until(pilot, lambda: a.engine.is_loaded(MODEL), 15)  # type: ignore[union-attr]
        await ui_until(pilot, lambda: "here" in row(table, MODEL)[2], 15)
        assert screen.selected_model() == MODEL
        # The idle-unload countdown of A's model, counted down from the node's figure.
        await ui_until(pilot, lambda: row(table, MODEL)[3].startswith("in "), 15)
        # The countdown the screen's one-second tick reads comes with the node's snapshots.
        await ui_until(pilot, lambda: remote.keep_alive.time_left(MODEL, time.monotonic()), 5)
        left = remote.keep_alive.time_left(MODEL, time.monotonic())
        on_node = a.keep_alive.time_left(MODEL, time.monotonic())
        assert left is not None and on_node is not None and 0 < left <= on_node + 1.5
        await pilot.press("q")
        await ui_until(pilot, lambda: not app.is_running)
    assert app.return_code == 0
    assert a.engine.is_loaded(MODEL)  # type: ignore[union-attr]  # quitting left A as it was


async def test_attached_import_converts_on_the_node_with_progress(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    loop = NodeLoop()
    node = await loop.start(
        lambda: Node(
            Settings(
                host="127.0.0.1", port=0, data_dir=str(tmp_path / "d"), node_name="solo",
                mode="solo", models={"aaa/first": str(tiny_model_path)},
                default_model="aaa/first",
            )
        )
    )  # fmt: skip
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all" * 10)
    good = write_llama_gguf(
        tiny_model_path, tmp_path / "tiny.gguf", load_weights(tiny_model_path), {}
    )
    remote = await attach(node)
    try:
        # Progress comes line by line from the node's converter.
        steps: list[tuple[float, str]] = []
        path = await remote.import_gguf(
            good, "zzz/direct", progress=lambda f, s: steps.append((f, s))
        )
        assert path == node.settings.models_path() / "zzz" / "direct"
        assert (path / "config.json").is_file()
        assert len(steps) > 2 and steps[-1][0] == 1.0
        assert [f for f, _ in steps] == sorted(f for f, _ in steps)

        app = SalutApp(remote, start_node=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("2")
            screen = app.screen
            assert isinstance(screen, ModelsScreen)
            await pilot.press("i")
            await ui_until(pilot, lambda: isinstance(app.screen, ImportDialog))
            dialog = app.screen
            dialog.query_one("#import-path", Input).value = str(bogus)
            dialog.query_one("#import-id", Input).value = "zzz/imported"
            await pilot.click("#import-go")
            error = dialog.query_one("#import-error", Static)
            await ui_until(pilot, lambda: "Import failed" in str(error.render()), 30)
            text = str(error.render())
            assert "not a readable GGUF" in text and "Error" not in text  # words, no class
            assert app.screen is dialog  # still open, inputs kept
            dialog.query_one("#import-path", Input).value = str(good)
            await pilot.click("#import-go")
            await ui_until(pilot, lambda: app.screen is screen, 60)
            table = screen.query_one("#model-table", DataTable)
            await ui_until(pilot, lambda: "zzz/imported" in table.rows)
            assert screen.selected_model() == "zzz/imported"
            await pilot.press("l")
            await ui_until(pilot, lambda: node.engine.is_loaded("zzz/imported"), 30)  # type: ignore[union-attr]
            await pilot.press("q")
            await ui_until(pilot, lambda: not app.is_running)
        assert app.return_code == 0
    finally:
        await remote.stop()
        await loop.run(node.stop())
        loop.close()
