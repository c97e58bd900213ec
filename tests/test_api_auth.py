"""The optional API key: /v1 needs `Authorization: Bearer <key>`, /health and non-/v1 routes don't."""

from __future__ import annotations

import pytest
from aiohttp import web

from salut_tui.api.app import create_app
from salut_tui.api.auth import bearer_token, is_protected, key_matches
from salut_tui.config import Settings
from salut_tui.node import Node

KEY = "sk-salut-test-1234"


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token("") is None
    assert bearer_token(None) is None


def test_key_comparison() -> None:
    assert key_matches(KEY, KEY)
    assert not key_matches(KEY, KEY[:-1])
    assert not key_matches(KEY, KEY + "x")
    assert not key_matches(KEY, None)
    assert key_matches("clé-ünicode", "clé-ünicode")  # compared as bytes, non-ASCII is fine


def test_protected_paths() -> None:
    assert is_protected("/v1/models")
    assert is_protected("/v1")
    assert not is_protected("/health")
    assert not is_protected("/v10/models")
    assert not is_protected("/peer/link")


@pytest.fixture
async def keyed_node(tmp_path, tiny_model_path, tiny_model_id):
    settings = Settings(
        models={tiny_model_id: str(tiny_model_path)},
        data_dir=str(tmp_path),
        mode="solo",
        api_key=KEY,
    )
    node = Node(settings)
    assert node.engine is not None
    await node.engine.start()
    yield node
    await node.engine.stop()


async def peer_route(request: web.Request) -> web.Response:
    return web.json_response({"peer": True})


@pytest.fixture
async def client(aiohttp_client, keyed_node):
    app = create_app(keyed_node)
    # Stands in for the cluster's peer routes: outside /v1, so the client key must not guard it.
    app.router.add_get("/peer/hello", peer_route)
    return await aiohttp_client(app)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": KEY},
        {"Authorization": f"Basic {KEY}"},
    ],
)
@pytest.mark.parametrize("path", ["/v1/models", "/v1/cluster", "/v1/models/x/y"])
async def test_v1_routes_refuse_without_the_key(client, headers: dict, path: str) -> None:
    response = await client.get(path, headers=headers)
    assert response.status == 401
    body = await response.json()
    assert body["error"]["code"] == "invalid_api_key"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_posts_are_refused_before_the_body_is_looked_at(client) -> None:
    response = await client.post("/v1/chat/completions", data=b"{not json")
    assert response.status == 401


async def test_v1_routes_accept_the_key(client, tiny_model_id: str) -> None:
    response = await client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status == 200
    ids = [m["id"] for m in (await response.json())["data"]]
    assert tiny_model_id in ids


async def test_health_and_peer_routes_stay_open(client) -> None:
    health = await client.get("/health")
    assert health.status == 200
    assert (await health.json())["status"] == "ok"
    peer = await client.get("/peer/hello")
    assert peer.status == 200


async def test_key_changes_apply_without_restart(client, keyed_node: Node) -> None:
    keyed_node.settings.api_key = ""
    assert (await client.get("/v1/models")).status == 200
    keyed_node.settings.api_key = "new-key"
    assert (
        await client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    ).status == 401
    ok = await client.get("/v1/models", headers={"Authorization": "Bearer new-key"})
    assert ok.status == 200
