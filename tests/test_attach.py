"""Attaching the terminal UI to a node that already runs: the wire format (pure), the control
event stream, and the same screens on a real node through `RemoteNode`; quitting detaches."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import aiohttp
import pytest
from textual.widgets import Input, Static

from salut_tui import events
from salut_tui.cli.attach import running_node
from salut_tui.cluster.control import CONTROL_TOKEN_FILE, call_control, read_control_token
from salut_tui.config import Settings
from salut_tui.engine.types import Error, GenerationRequest, ModelError
from salut_tui.node import Node
from salut_tui.remote.client import AttachError, RemoteNode
from salut_tui.remote.routes import FORWARDED
from salut_tui.remote.wire import (
    EVENT_TYPES,
    cluster_from_json,
    event_from_json,
    event_to_json,
    model_from_json,
)
from salut_tui.settings_change import SavedSettings
from salut_tui.transfers import TransferView
from salut_tui.ui.app import SalutApp
from salut_tui.ui.quitting import Stopping, quit_reasons
from salut_tui.ui.screens.logs import LogsScreen
from salut_tui.ui.screens.settings import SettingsScreen
from salut_tui.ui.screens.streams import StreamsScreen
from salut_tui.ui.widgets.confirm import Confirm
from salut_tui.views import (
    ClusterView,
    ModelInfo,
    SelfView,
    ShardPartView,
    ShardView,
    to_json,
)
from tests.attached import NodeLoop, attach
from tests.helpers import free_port, ui_until, until, wait_healthy
from tests.test_ui_app import (
    long_answer,
    long_context_model,  # noqa: F401  (a fixture)
    make_node,
    screen_text,
)
from tests.test_ui_chat import open_chat
from tests.test_ui_settings_logs import USER_FILE

SAMPLES: list[events.Event] = [
    events.ModelLoadStarted("m"),
    events.ModelLoadProgressed("m", 0.5, "loading weights"),
    events.ModelLoaded("m", 12),
    events.ModelLoadFailed("m", "no"),
    events.ModelUnloaded("m"),
    events.StreamStarted("r", "m", "127.0.0.1", "hi", 1.0, "local"),
    events.StreamTokensReceived("r", "tok", 3),
    events.StreamFinished("r", "stop", 1, 3, 0.1, 30.0, None),
    events.PeersChanged("seen"),
    events.PairingChanged("waiting", ""),
    events.KeepAliveChanged("m"),
    events.ShardsChanged("ready"),
    events.TransferChanged(
        TransferView("pull-1", "pull", "m", "B", "running", "copying", 5, 10, 5, 2.5, 2.0)
    ),
]


def test_views_with_shards_round_trip() -> None:
    part = ShardPartView("id-a", "A", 0, (0, 2))
    shard = ShardView("i1", "m", "pipeline", "ready", None, 0, (0, 2), 10, 1.5, 0, "id-a", (part,))
    model = ModelInfo("m", "local", True, nodes=("A",), shard=(part,))
    assert model_from_json(json.loads(json.dumps(dataclasses.asdict(model)))) == model
    node = SelfView(
        "id-a", "A", "127.0.0.1:1", "0", "cluster", "blas", "ok", 1, 1, ("m",), 0, 0.0, (shard,)
    )
    cluster = ClusterView(node, ())
    assert cluster_from_json(json.loads(json.dumps(to_json(cluster)))) == cluster


def test_every_event_round_trips() -> None:
    assert {type(e).__name__ for e in SAMPLES} == set(EVENT_TYPES)
    for event in SAMPLES:
        assert event_from_json(event_to_json(event)) == event
        assert dataclasses.asdict(event_from_json(event_to_json(event))) == dataclasses.asdict(
            event
        )


@pytest.fixture
async def running(tmp_path: Path, tiny_model_path: Path, tiny_model_id: str):
    """A node as `salut serve` runs it (no UI in this process's sense: started directly)."""
    node = make_node(tmp_path, tiny_model_path, tiny_model_id)
    await node.start(preload=[tiny_model_id])
    await until(lambda: node.engine.is_loaded(tiny_model_id), 30, what="model loaded")
    yield node
    await node.stop()


async def test_attached_ui_shows_the_node_and_quitting_leaves_it_running(
    running: Node, tiny_model_id: str
) -> None:
    node = running
    data_dir = node.settings.data_path()
    assert (data_dir / CONTROL_TOKEN_FILE).stat().st_mode & 0o777 == 0o600  # solo nodes too
    # Blocking, as the CLI calls it before its loop starts: here the node shares this loop.
    remote = await asyncio.to_thread(running_node, data_dir)
    assert remote is not None and remote.remote_port == node.port
    forwarded: list[logging.LogRecord] = []
    collect = logging.Handler()
    collect.emit = lambda r: forwarded.append(r) if getattr(r, FORWARDED, False) else None  # type: ignore[method-assign]
    logging.getLogger().addHandler(collect)
    await remote.start()
    app = SalutApp(remote, start_node=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert "test-node" in screen_text(app, "#node-card")
        await ui_until(pilot, lambda: tiny_model_id in screen_text(app, "#loaded-models"))

        # A request made to the node shows live on the attached Streams screen.
        await pilot.press("3")
        body = {
            "model": tiny_model_id,
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 8,
        }
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{node.port}/v1/chat/completions"
            async with http.post(url, json=body) as response:
                assert response.status == 200
        assert isinstance(app.screen, StreamsScreen)
        await ui_until(
            pilot,
            lambda: any(
                not r.live and r.completion_tokens > 0 for r in app.state.streams.records.values()
            ),
        )
        [record] = app.state.streams.records.values()
        assert record.prompt_preview.startswith("hello there") and record.text
        # The node's log records come along (here node and UI share a process: the forwarded
        # copies are the ones marked so), API requests included.
        await ui_until(
            pilot,
            lambda: any(
                r.name == "aiohttp.access" and "POST /v1/chat/completions" in r.getMessage()
                for r in forwarded
            ),
        )
        logging.getLogger().removeHandler(collect)

        # Actions go to the node: unload, then load again, through the control routes.
        await remote.unload_model(tiny_model_id)
        await ui_until(pilot, lambda: not node.engine.is_loaded(tiny_model_id))
        await ui_until(pilot, lambda: not remote.engine.is_loaded(tiny_model_id))
        await remote.load_model(tiny_model_id)
        assert node.engine.is_loaded(tiny_model_id)
        await pilot.press("q")
        await ui_until(pilot, lambda: not app.is_running)
    assert app.return_code == 0
    assert not remote.connected
    # The node is still up and serving.
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{node.port}/v1/models") as response,
    ):
        assert response.status == 200
    assert read_control_token(data_dir) is not None


async def test_a_wrong_token_or_a_gone_node_does_not_attach(running: Node, tmp_path: Path) -> None:
    remote = RemoteNode("127.0.0.1", running.port, "not-the-token")
    with pytest.raises(AttachError):
        await remote.start()
    # A token file left behind by a node that is gone: `salut` starts a node instead.
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / CONTROL_TOKEN_FILE).write_text("127.0.0.1 9 whatever")
    assert await asyncio.to_thread(running_node, stale) is None
    assert running_node(tmp_path / "nothing-here") is None


# ---- acting through an attached UI on a node that runs on its own loop (as in its process) ----


@pytest.fixture
async def served(
    tmp_path: Path,
    long_context_model: Path,  # noqa: F811
    tiny_model_id: str,
):
    """A node as `salut serve` runs it, on its own loop, with a commented config file (the
    tiny model with a long context: a greedy answer runs long enough to be stopped)."""
    (tmp_path / "salut.toml").write_text(USER_FILE)
    loop = NodeLoop()
    node = await loop.start(
        lambda: make_node(tmp_path, long_context_model, tiny_model_id), [tiny_model_id]
    )
    await until(lambda: node.engine.is_loaded(tiny_model_id), 30, what="model loaded")
    yield node
    await loop.run(node.stop())
    loop.close()


async def test_attached_chat_streams_on_the_node_and_escape_stops_it(
    served: Node, tiny_model_id: str
) -> None:
    node = served
    seen: list[events.Event] = []  # the node's own events (its Streams screen reads these)
    node.events.subscribe(seen.append)
    remote = await attach(node)
    app = SalutApp(remote, start_node=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(app, pilot, tiny_model_id)
        await pilot.press(*"hello", "ctrl+s")
        await ui_until(pilot, lambda: len(screen.history) == 2, 30)
        assert screen.history[1]["content"]  # an answer, from the node's model
        [started] = [e for e in seen if isinstance(e, events.StreamStarted)]
        assert started.client == "playground" and started.served_by == "local"
        finished = [e for e in seen if isinstance(e, events.StreamFinished)]
        assert finished and finished[0].finish_reason == "length"
        assert finished[0].completion_tokens == 6
        label = [str(s.render()) for s in screen.query(".turn-label").results(Static)][1]
        assert "served by local" in label and "6 tokens" in label

        # A long answer streams token by token; escape closes the stream: the node stops.
        await pilot.press("ctrl+n")
        long_answer(screen)
        await pilot.press(*"go on", "ctrl+s")
        # Plain waits here, not the pilot's: this node answers ~500 tokens in a second or two
        # and the pilot's pause waits for the app to idle, which it does not while tokens come.
        await until(lambda: node.stats().in_flight == 1, 30, what="the answer started")
        await until(
            lambda: any(
                r.completion_tokens > 2 for r in app.state.streams.records.values() if r.live
            ),
            what="tokens reached the attached UI",
        )
        await pilot.press("escape")
        await ui_until(pilot, lambda: node.stats().in_flight == 0, 15)
        assert screen_text(app, "#chat-status") == "stopped"
        last = [e for e in seen if isinstance(e, events.StreamFinished)][-1]
        assert last.finish_reason == "cancelled" and last.completion_tokens < 16000
        # The attached Streams screen shows both, the second as cancelled.
        await pilot.press("escape", "3")  # out of the prompt, then to Streams
        await ui_until(pilot, lambda: isinstance(app.screen, StreamsScreen))
        records = list(app.state.streams.records.values())
        await ui_until(pilot, lambda: all(not r.live for r in records))
        assert [r.status for r in records][-1] == "cancelled"

        # Quitting detaches: the node keeps serving, the UI exits 0.
        await pilot.press("q")
        await ui_until(pilot, lambda: not app.is_running)
    assert app.return_code == 0 and not remote.connected
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{node.port}/v1/chat/completions"
        body = {"model": tiny_model_id, "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2}  # fmt: skip
        async with http.post(url, json=body) as response:
            assert response.status == 200


async def test_attached_settings_write_the_nodes_file_and_apply_live(
    served: Node, tmp_path: Path
) -> None:
    node = served
    config = tmp_path / "salut.toml"
    remote = await attach(node)
    assert remote.config_path == config
    app = SalutApp(remote, start_node=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("7")
        await ui_until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        screen = app.screen
        screen.query_one("#set-host", Input).value = "not a host!"
        await pilot.press("ctrl+s")
        status = "#settings-status"
        await ui_until(pilot, lambda: "Not saved" in screen_text(app, status))
        assert "'host'" in screen_text(app, status) and config.read_text() == USER_FILE

        screen.query_one("#set-host", Input).value = "127.0.0.1"
        screen.query_one("#set-memory_headroom_gb", Input).value = "2.5"
        screen.query_one("#set-port", Input).value = "7999"
        await pilot.press("ctrl+s")
        await ui_until(pilot, lambda: "Saved" in screen_text(app, status))
        assert "Restart the node for the new port" in screen_text(app, status)
        text = config.read_text()
        assert text.startswith(USER_FILE.split("[models]")[0].rstrip("\n"))  # comments kept
        assert "# A model table the user wrote by hand." in text
        saved = tomllib.loads(text)
        assert saved["memory_headroom_gb"] == 2.5 and saved["port"] == 7999
        # Applied at once on the node (and shown here); the port waits for a restart.
        assert node.settings.memory_headroom_gb == 2.5
        assert remote.settings.memory_headroom_gb == 2.5
        assert node.settings.port == 0

        # Quitting asks about nothing streaming on the node: only this UI's unsaved edits.
        screen.query_one("#set-memory_headroom_gb", Input).value = "3"
        await pilot.press("q")
        await ui_until(pilot, lambda: isinstance(app.screen, Confirm))
        detail = str(app.screen.query_one("#confirm-detail", Static).render())
        assert "The node keeps running." in detail
        await pilot.press("y")
        await ui_until(pilot, lambda: isinstance(app.screen, Stopping) or not app.is_running)
        if app.is_running:
            text = str(app.screen.query_one("#stopping-text", Static).render())
            assert "node keeps running" in text
        await ui_until(pilot, lambda: not app.is_running)
    assert app.return_code == 0
    assert node.stats() is not None and node.engine is not None and node.engine.loaded()


def test_quitting_an_attached_ui_is_not_held_up_by_the_nodes_streams() -> None:
    assert quit_reasons(2, []) == ["2 streams in flight will be cut short"]
    assert quit_reasons(2, [], attached=True) == []


def test_a_node_of_another_wire_version_is_refused_and_settings_round_trip(
    tmp_path: Path,
) -> None:
    remote = RemoteNode("127.0.0.1", 9, "token")
    remote._apply_snapshot({"port": 9})  # a node from before versioning sends none: 1
    assert remote._refused is not None and "wire version 1" in remote._refused
    assert remote.snapshot == {}  # nothing of it was read
    saved = SavedSettings(tmp_path / "salut.toml", Settings(port=7999), ("api_key",), ("port",))
    assert SavedSettings.from_json(json.loads(json.dumps(saved.to_json()))) == saved


async def test_attached_chat_for_an_unknown_model_gets_the_nodes_error(served: Node) -> None:
    remote = await attach(served)
    try:
        request = GenerationRequest("nobody/nothing", messages=({"role": "user", "content": "x"},))
        [chunk] = [c async for c in remote.generate(request)]
        assert isinstance(chunk, Error) and chunk.status == 404
        assert chunk.code == "model_not_found" and "nobody/nothing" in chunk.message
    finally:
        await remote.stop()


# ---- the node's log level from an attached Logs screen: a node in a process of its own ----


@pytest.fixture
def serve_process(tmp_path: Path, tiny_model_path: Path):
    """`salut serve` at INFO in its own process (its loggers are not this process's)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SALUT_CONFIG"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no stray user config
    data_dir = tmp_path / "data"
    cmd = [
        sys.executable, "-m", "salut_tui", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(data_dir), "--mode", "solo", "--model", str(tiny_model_path),
        "--log-level", "INFO",
    ]  # fmt: skip
    with (tmp_path / "serve.log").open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc, models=[str(tiny_model_path)])
            yield data_dir, port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def routed(app: SalutApp, levelname: str) -> bool:
    """The node's record of where it routed a request, at `levelname`, in the attached Logs."""
    return any(
        e.name == "salut_tui.node" and e.levelname == levelname and "request for" in e.message
        for e in app.state.logs
    )


async def test_debug_in_attached_logs_is_the_nodes_until_the_ui_detaches(
    serve_process: tuple[Path, int], tiny_model_path: Path
) -> None:
    data_dir, port = serve_process
    remote = await asyncio.to_thread(running_node, data_dir)
    assert remote is not None
    await remote.start()
    assert remote.snapshot["log_level"] == "INFO"

    async def chat() -> None:
        body = {"model": str(tiny_model_path), "max_tokens": 2,
                "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as response,
        ):
            assert response.status == 200

    def access_lines() -> int:
        return sum(e.name == "aiohttp.access" for e in app.state.logs)

    app = SalutApp(remote, start_node=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("8")
        await ui_until(pilot, lambda: isinstance(app.screen, LogsScreen))
        # At INFO the node routes a request without a DEBUG record (its access line comes).
        await chat()
        await ui_until(pilot, lambda: access_lines() == 1)
        assert not routed(app, "DEBUG")

        await pilot.press("v", "v", "v")  # INFO -> WARNING -> ERROR -> DEBUG
        await ui_until(pilot, lambda: app.screen.filter.level == "DEBUG")  # type: ignore[attr-defined]
        await ui_until(pilot, lambda: remote.snapshot["log_level"] == "DEBUG")  # the node's
        await chat()
        await ui_until(pilot, lambda: routed(app, "DEBUG"))
        [record] = [e for e in app.state.logs if "request for" in e.message]
        assert record.levelname == "DEBUG" and str(tiny_model_path) in record.message

        await pilot.press("q")
        await ui_until(pilot, lambda: not app.is_running)
    assert app.return_code == 0 and not remote.connected

    def node_level() -> str:
        host, node_port, token = read_control_token(data_dir)  # type: ignore[misc]
        hello = call_control(
            None, "GET", "/ui/hello", host=host, port=node_port, token=token, timeout=5
        )
        return str(hello["log_level"])

    # Detached: the node notices the stream is gone (at its next snapshot, within a second or
    # so) and is back at its configured level.
    await until(lambda: node_level() == "INFO", 15, what="the node back at INFO", interval=0.2)


async def test_the_log_level_route_checks_the_name_and_detaching_puts_it_back(
    running: Node,
) -> None:
    node = running
    configured = node.log_level
    remote = await attach(node)
    with pytest.raises(ModelError, match="not a log level"):
        await remote.control("POST", "/ui/log-level", {"level": "LOUD"})
    assert node.log_level == configured
    remote.set_log_level("DEBUG")  # a key press: sent in the background
    await until(lambda: node.log_level == "DEBUG", what="the node at DEBUG")
    await until(lambda: remote.snapshot.get("log_level") == "DEBUG", what="shown attached")
    await remote.stop()
    await until(lambda: node.log_level == configured, what="the configured level again")
    assert not node.log_levels.overridden
