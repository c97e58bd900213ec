"""Pure cluster logic: the merged model list and the wire forms (routing: test_routing.py)."""

from __future__ import annotations

from salut_tui.cluster.models import merge_models
from salut_tui.cluster.wire import (
    chunk_from_bytes,
    chunk_to_bytes,
    request_from_json,
    request_to_json,
)
from salut_tui.engine.types import Error, Finish, GenerationRequest, SamplingParams, Token, Usage
from salut_tui.views import ModelInfo


def test_merge_lists_each_model_once_with_its_holders() -> None:
    local = [ModelInfo("m", "local", True, nodes=("A",)), ModelInfo("x", "local", False)]
    peers = [
        ("B", {"loaded_models": ["m", "b-only"], "available_models": ["m", "b-only", "b-disk"]}),
        ("C", {"loaded_models": ["b-only", "x"], "available_models": ["x"]}),
    ]
    merged = {m.id: m for m in merge_models(local, peers)}
    assert list(merged) == ["m", "x", "b-only", "b-disk"]
    assert merged["m"].owned_by == "local" and merged["m"].nodes == ("A", "B")
    assert merged["x"].owned_by == "local" and merged["x"].loaded and merged["x"].nodes == ("C",)
    assert merged["b-only"].owned_by == "B" and merged["b-only"].nodes == ("B", "C")
    assert merged["b-disk"] == ModelInfo("b-disk", "B", False, peers_with_files=("B",))
    assert merged["b-only"].peers_with_files == ("B", "C") and merged["x"].peers_with_files == (
        "C",
    )
    assert merged["m"].peers_with_files == ("B",)


def test_request_and_chunks_survive_the_wire() -> None:
    req = GenerationRequest(
        model="m",
        messages=({"role": "user", "content": "hé"},),
        sampling=SamplingParams(temperature=0.2, max_tokens=7, stop=("\n",), seed=3),
        client="10.0.0.9",
    )
    assert request_from_json(request_to_json(req)) == req
    text = GenerationRequest(model="m", prompt="once upon")
    assert request_from_json(request_to_json(text)) == text
    for chunk in (
        Token("a", 5),
        Token(""),
        Finish("stop", Usage(3, 4)),
        Error("boom", code="x", status=507, param="model"),
    ):
        assert chunk_from_bytes(chunk_to_bytes(chunk)) == chunk
