"""The Models screen, cluster-aware (Pilot): where each model lives and is loaded, load/unload
acting on the peer over the link, copying a model here with a live progress row, the cursor
following its model when rows re-sort, and the import dialog (progress bar; stays open with its
inputs on failure, the reason in words)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.widgets import Button, DataTable, Input, ProgressBar, Static

from salut_tui.cluster.models import merge_sharded
from salut_tui.config import Settings
from salut_tui.node import Node
from salut_tui.remote.wire import model_from_json
from salut_tui.shard.placement import ShardPlan, StageAssignment
from salut_tui.shard.service import plan_from_summary, plan_summary
from salut_tui.transfer.partial import held_weights
from salut_tui.ui.app import SalutApp
from salut_tui.ui.model_rows import (
    describe_plan,
    idle_unload,
    load_target,
    loaded_on,
    unload_target,
    where,
)
from salut_tui.ui.screens.import_dialog import ImportDialog
from salut_tui.ui.screens.models import ModelsScreen
from salut_tui.ui.widgets.confirm import Confirm
from salut_tui.ui.widgets.progress_rows import TransferRow
from salut_tui.views import ModelInfo, ShardPartView, ShardView
from tests.helpers import ui_until, until
from tests.model_factory import build_tiny_model
from tests.test_cluster_node import pair
from tests.test_gguf_import import load_weights, write_llama_gguf

MODEL = "salut-test/tiny-llama"


def test_rows_say_where_and_actions_pick_the_node() -> None:
    on_b = ModelInfo("m", "B", True, nodes=("B",), peers_with_files=("B",))
    assert (where(on_b), loaded_on(on_b, "A"), idle_unload(on_b, "A")) == ("B", "B", "")
    assert load_target(on_b).peer == "B" and unload_target(on_b, "A").peer == "B"  # type: ignore[union-attr]
    both = ModelInfo("m", "local", True, nodes=("A", "B"), here=True, peers_with_files=("B",),
                     keep_alive_left=90.0)  # fmt: skip
    assert (where(both), loaded_on(both, "A"), idle_unload(both, "A")) == (
        "here, B", "here, B", "in 1m30s",
    )  # fmt: skip
    assert load_target(both).peer is None and unload_target(both, "A").peer is None  # type: ignore[union-attr]
    nowhere = ModelInfo("m", "local", False, here=True)
    assert unload_target(nowhere, "A") is None and where(nowhere) == "here"


def make(tmp: Path, name: str) -> Node:
    return Node(
        Settings(
            host="127.0.0.1", port=0, data_dir=str(tmp / name), node_name=name,
            default_model="salut-test/none",
        )
    )  # fmt: skip


@pytest.fixture
async def cluster(tmp_path: Path, tiny_model_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a, b = make(tmp_path, "A"), make(tmp_path, "B")
    shutil.copytree(tiny_model_path, b.settings.models_path() / MODEL)
    await a.start(preload=[])
    await b.start(preload=[MODEL])
    await until(lambda: b.engine is not None and b.engine.is_loaded(MODEL), 30)
    await pair(a, b)
    yield a, b
    await a.stop()
    await b.stop()


def row(table: DataTable, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


async def test_models_screen_acts_on_the_peer_and_copies_here(cluster: tuple[Node, Node]) -> None:
    a, b = cluster
    app = SalutApp(a, preload=[])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        table = screen.query_one("#model-table", DataTable)
        await ui_until(pilot, lambda: MODEL in table.rows and "B" in row(table, MODEL)[2], 15)
        assert row(table, MODEL)[1] == "B"  # its files are on B only
        table.move_cursor(row=table.get_row_index(MODEL))
        await pilot.press("u")  # unloads it on B, over the link
        await ui_until(pilot, lambda: not b.engine.is_loaded(MODEL), 15)  # type: ignore[union-attr]
        status = screen.query_one("#models-status", Static)
        await ui_until(pilot, lambda: "Unloaded" in str(status.render()))
        assert f"Unloaded {MODEL} on B" in str(status.render())
        await pilot.press("l")  # loads it on B: the files are not here
        await ui_until(pilot, lambda: b.engine.is_loaded(MODEL), 15)  # type: ignore[union-attr]
        assert not a.engine.is_loaded(MODEL)  # type: ignore[union-attr]
        await ui_until(pilot, lambda: f"Loaded {MODEL} on B" in str(status.render()))
        await pilot.press("p")  # copy it here: a progress row, then "here, B"
        await ui_until(pilot, lambda: bool(screen.query(TransferRow)))
        await ui_until(pilot, lambda: row(table, MODEL)[1] == "here, B", 30)
        transfer = screen.query_one(TransferRow)
        await ui_until(pilot, lambda: transfer.view.state == "done")
        assert transfer.query_one(ProgressBar).percentage == 1.0
        await pilot.press("l")  # now here: it loads here; the rows re-sort, the cursor follows
        await ui_until(pilot, lambda: a.engine.is_loaded(MODEL), 15)  # type: ignore[union-attr]
        await ui_until(pilot, lambda: "here" in row(table, MODEL)[2])
        assert screen.selected_model() == MODEL
        await ui_until(pilot, lambda: row(table, MODEL)[3].startswith("in "))  # idle countdown


async def test_import_dialog_shows_progress_and_keeps_its_inputs_on_failure(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    node = Node(
        Settings(
            host="127.0.0.1",
            port=0,
            data_dir=str(tmp_path / "d"),
            node_name="solo",
            mode="solo",
            models={"aaa/first": str(tiny_model_path)},
            default_model="aaa/first",
        )
    )
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all" * 10)
    good = write_llama_gguf(
        tiny_model_path, tmp_path / "tiny.gguf", load_weights(tiny_model_path), {}
    )
    app = SalutApp(node, preload=[])
    await node.start(preload=[])
    try:
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
            assert "not a readable GGUF" in text and "Error" not in text  # words, no class name
            assert app.screen is dialog  # still open, inputs kept
            assert dialog.query_one("#import-path", Input).value == str(bogus)
            dialog.query_one("#import-path", Input).value = str(good)
            await pilot.click("#import-go")
            await ui_until(pilot, lambda: app.screen is screen, 60)
            table = screen.query_one("#model-table", DataTable)
            await ui_until(pilot, lambda: "zzz/imported" in table.rows)
            assert screen.selected_model() == "zzz/imported"  # not row 0
            await pilot.press("l")
            await ui_until(pilot, lambda: node.engine.is_loaded("zzz/imported"), 30)  # type: ignore[union-attr]
            assert not node.engine.is_loaded("aaa/first")  # type: ignore[union-attr]
    finally:
        await node.stop()


def test_sharded_rows_list_every_node_and_its_layers() -> None:
    # The row data as the node builds it: a coordinator's ShardView merged into the model list.
    parts = (ShardPartView("id-a", "A", 0, (0, 14)), ShardPartView("id-b", "B", 1, (14, 28)))
    view = ShardView("i1", "m", "pipeline", "ready", None, 0, (0, 14), 1 << 30, 0.0, 0, "id-a",
                     parts)  # fmt: skip
    local = [ModelInfo("m", "local", False, size_bytes=10, here=True)]
    (info,) = merge_sharded(local, [view])
    assert info.loaded and info.here and info.nodes == ("A", "B")
    assert (where(info), loaded_on(info, "A"), loaded_on(info, "C")) == (
        "sharded", "here 0-14, B 14-28", "A 0-14, B 14-28",
    )  # fmt: skip
    starting = merge_sharded(local, [dataclasses.replace(view, state="starting")])[0]
    assert not starting.loaded and where(starting) == "sharded"
    plan = ShardPlan("m", 28, (
        StageAssignment(0, "id-a", "A", 0, 14, 1 << 30, 4 << 30, True),
        StageAssignment(1, "id-b", "B", 14, 28, 1 << 30, 2 << 30, False),
    ))  # fmt: skip
    text = describe_plan(plan, lambda n: f"{(n or 0) >> 30}G")
    assert "A              layers   0-14  1G of 4G" in text
    assert "B              layers  14-28  1G of 2G  (no files!)" in text
    assert "is not on B: copy its files there first" in text
    # An attached UI reads the same row and plan over the control routes.
    assert model_from_json(json.loads(json.dumps(dataclasses.asdict(info)))) == info
    assert plan_from_summary(json.loads(json.dumps(plan_summary(plan)))) == plan


async def test_shard_key_refuses_clearly_on_a_node_without_peers(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    node = make(tmp_path, "A")
    shutil.copytree(tiny_model_path, node.settings.models_path() / MODEL)
    await node.start(preload=[])
    try:
        app = SalutApp(node, preload=[])
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("2")
            screen = app.screen
            assert isinstance(screen, ModelsScreen)
            table = screen.query_one("#model-table", DataTable)
            await ui_until(pilot, lambda: MODEL in table.rows)
            screen.select(MODEL)
            await pilot.press("s")
            status = screen.query_one("#models-status", Static)
            await ui_until(pilot, lambda: "No paired peer" in str(status.render()))
            assert f"No paired peer to split {MODEL} over: l loads it here." in str(status.render())
            assert app.screen is screen  # no dialog: nothing to confirm
    finally:
        await node.stop()


async def test_shard_key_shows_the_plan_then_cancel_starts_nothing(
    cluster: tuple[Node, Node], tiny_model_path: Path
) -> None:
    a, _ = cluster
    shutil.copytree(tiny_model_path, a.settings.models_path() / MODEL)
    app = SalutApp(a, preload=[])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        table = screen.query_one("#model-table", DataTable)
        await ui_until(pilot, lambda: MODEL in table.rows and row(table, MODEL)[1] == "here, B")
        screen.select(MODEL)
        await pilot.press("s")  # the plan over A and B: layers and memory per node
        await ui_until(pilot, lambda: isinstance(app.screen, Confirm))
        detail = str(app.screen.query_one("#confirm-detail", Static).render())
        assert "over 2 nodes" in detail
        assert re.search(r"A +layers +0-\d+ ", detail) and re.search(r"B +layers +\d+-", detail)
        await pilot.press("n")
        await ui_until(pilot, lambda: app.screen is screen)
        assert a.shards is not None and a.shards.service.views() == ()


async def test_shard_key_loads_sharded_live_and_unload_ends_it_everywhere(
    cluster: tuple[Node, Node], tiny_model_path: Path
) -> None:
    a, b = cluster
    shutil.copytree(tiny_model_path, a.settings.models_path() / MODEL)
    app = SalutApp(a, preload=[])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        table = screen.query_one("#model-table", DataTable)
        await ui_until(pilot, lambda: MODEL in table.rows and row(table, MODEL)[1] == "here, B")
        screen.select(MODEL)
        await pilot.press("s")
        await ui_until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")  # the runners start on A and B; the row follows ShardsChanged
        status = screen.query_one("#models-status", Static)
        await ui_until(pilot, lambda: "Loaded" in str(status.render()), 90)
        assert f"Loaded {MODEL} sharded over A, B." in str(status.render())
        await ui_until(pilot, lambda: row(table, MODEL)[1] == "sharded")
        assert re.fullmatch(r"\[green\]here 0-\d+, B \d+-\d+\[/\]", row(table, MODEL)[2])
        await pilot.press("u")  # ends it on every node
        await ui_until(pilot, lambda: "Unloaded" in str(status.render()), 30)
        assert f"Unloaded {MODEL} on every node (A, B)." in str(status.render())
        await ui_until(pilot, lambda: row(table, MODEL)[1] == "here, B", 30)
        await until(lambda: not b.shards.service.manager.instances, 15)  # type: ignore[union-attr]


async def test_shard_key_offers_to_copy_the_files_a_node_lacks_first(
    cluster: tuple[Node, Node],
) -> None:
    a, b = cluster
    split = "salut-test/tiny-split"  # 4 layers in 3 weight files; B has none of it
    build_tiny_model(a.settings.models_path() / split, num_layers=4, weight_files=3)
    app = SalutApp(a, preload=[])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        table = screen.query_one("#model-table", DataTable)
        await ui_until(pilot, lambda: split in table.rows)
        screen.select(split)
        await pilot.press("s")
        await ui_until(pilot, lambda: isinstance(app.screen, Confirm))
        dialog = app.screen
        detail = str(dialog.query_one("#confirm-detail", Static).render())
        assert re.search(r"B +layers +\d+-4 .*\(no files!\)", detail), detail
        assert "copy first to B: model-00002-of-00003.safetensors, model-00003-of" in detail
        yes = dialog.query_one("#confirm-yes", Button)
        assert str(yes.label) == "Copy to B, then load (y)"
        await pilot.press("y")  # the copy (a transfer row) first, then the runners
        status = screen.query_one("#models-status", Static)
        await ui_until(pilot, lambda: "Loaded" in str(status.render()), 120)
        assert f"Loaded {split} sharded over A, B." in str(status.render())
        [copy] = [t for t in a.transfers.all() if t.kind == "copy"]
        assert copy.state == "done" and copy.source == "B"
        held = held_weights(b.settings.models_path(), split)
        assert held and "model-00001-of-00003.safetensors" not in held  # only B's layers
        await pilot.press("u")
        await ui_until(pilot, lambda: "Unloaded" in str(status.render()), 30)
