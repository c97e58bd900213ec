"""Attaching the terminal UI to a node that already runs: the wire format (pure), the control
event stream, and the same screens on a real node through `RemoteNode`; quitting detaches."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path

import aiohttp
import pytest

from salut_tui import events
from salut_tui.cli.attach import running_node
from salut_tui.cluster.control import CONTROL_TOKEN_FILE, read_control_token
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
from salut_tui.ui.app import SalutApp
from salut_tui.ui.screens.streams import StreamsScreen
from salut_tui.views import (
    ClusterView,
    ModelInfo,
    SelfView,
    ShardPartView,
    ShardView,
    to_json,
)
from tests.helpers import ui_until, until
from tests.test_ui_app import make_node, screen_text

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
