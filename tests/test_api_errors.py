"""Bad input over HTTP: every failure is an OpenAI error body with the right status and param."""

from __future__ import annotations

import pytest
from aiohttp import web

from salut_tui.api.app import MAX_BODY_BYTES, create_app
from salut_tui.config import Settings
from salut_tui.node import Node

HELLO = [{"role": "user", "content": "Hello!"}]
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture
async def node(tmp_path, tiny_model_path, tiny_model_id):
    settings = Settings(
        models={tiny_model_id: str(tiny_model_path)}, data_dir=str(tmp_path), mode="solo"
    )
    node = Node(settings)
    assert node.engine is not None
    await node.engine.start()
    await node.load_model(tiny_model_id)
    yield node
    await node.stop()


async def crashing_handler(request: web.Request) -> web.Response:
    raise RuntimeError("a bug in a handler")


@pytest.fixture
async def client(aiohttp_client, node):
    app = create_app(node)
    # A handler with a bug, to show what the error middleware makes of an unexpected exception.
    app.router.add_get("/v1/crash", crashing_handler)
    return await aiohttp_client(app)


async def error_of(response, status: int) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    return body["error"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b"null"])
async def test_bodies_that_are_not_json_objects(client, path: str, raw: bytes) -> None:
    error = await error_of(await client.post(path, data=raw), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": "0.7"}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"top_p": 1.01}, "top_p"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"stream": 1}, "stream"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 3}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": None}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": {"text": "hi"}}]}, "messages[0].content"),
    ],
)
async def test_chat_validation_errors_name_the_param(
    client, tiny_model_id: str, fields: dict, param: str
) -> None:
    body = {"model": tiny_model_id, "messages": HELLO, **fields}
    error = await error_of(await client.post("/v1/chat/completions", json=body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


async def test_missing_messages(client, tiny_model_id: str) -> None:
    error = await error_of(
        await client.post("/v1/chat/completions", json={"model": tiny_model_id}), 400
    )
    assert error["param"] == "messages"


@pytest.mark.parametrize(("prompt", "status"), [(["a", "b"], 400), ([1, 2, 3], 400), (None, 400)])
async def test_completion_prompt_errors(client, tiny_model_id: str, prompt, status: int) -> None:
    body = {"model": tiny_model_id, "prompt": prompt}
    error = await error_of(await client.post("/v1/completions", json=body), status)
    assert error["param"] == "prompt"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_unknown_model(client, path: str) -> None:
    body = {"model": "org/does-not-exist", "messages": HELLO, "prompt": "x"}
    error = await error_of(await client.post(path, json=body), 404)
    assert error["code"] == "model_not_found"
    assert "org/does-not-exist" in error["message"]


async def test_unknown_route_and_wrong_method(client) -> None:
    error = await error_of(await client.get("/v1/engines"), 404)
    assert error["code"] == "not_found"
    wrong = await client.get("/v1/chat/completions")
    error = await error_of(wrong, 405)
    assert error["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


async def test_body_too_large(client) -> None:
    error = await error_of(
        await client.post("/v1/chat/completions", data=b" " * (MAX_BODY_BYTES + 1)), 413
    )
    assert error["code"] == "request_too_large"


async def test_unexpected_exception_is_a_500_openai_error(client) -> None:
    error = await error_of(await client.get("/v1/crash"), 500)
    assert error["type"] == "server_error"
    assert "Traceback" not in error["message"] and "a bug" not in error["message"]


async def test_node_still_serves_after_bad_requests(client, tiny_model_id: str) -> None:
    for raw in (b"{", b"[]", b'{"messages": 5}'):
        assert (await client.post("/v1/chat/completions", data=raw)).status == 400
    body = {"model": tiny_model_id, "messages": HELLO, "max_tokens": 2}
    assert (await client.post("/v1/chat/completions", json=body)).status == 200
