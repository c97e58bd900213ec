"""MLX work that is not a generation (GGUF conversion) runs on the engine's one thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from salut_tui.config import Settings
from salut_tui.engine.types import ModelError
from salut_tui.node import Node
from tests.engine_helpers import chat, collect, make_engine
from tests.test_gguf_import import load_weights, write_llama_gguf


async def test_run_on_mlx_thread_runs_there_and_errors_travel_back(
    tmp_path, tiny_model_id, tiny_model_path
):
    engine, _ = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    try:
        assert (
            await engine.run_on_mlx_thread(lambda: threading.current_thread().name) == "salut-mlx"
        )

        def boom() -> None:
            raise ValueError("bad file")

        with pytest.raises(ValueError, match="bad file"):
            await engine.run_on_mlx_thread(boom)
        await engine.load(tiny_model_id)  # the thread is still alive and serving
        text, _ = await collect(engine, chat(tiny_model_id, max_tokens=4))
        assert text
    finally:
        await engine.stop()
    with pytest.raises(ModelError) as info:
        await engine.run_on_mlx_thread(lambda: None)
    assert info.value.code == "engine_stopped"


async def test_node_import_converts_on_the_mlx_thread(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    gguf_file = write_llama_gguf(
        tiny_model_path, tmp_path / "t.gguf", load_weights(tiny_model_path), {}
    )
    node = Node(Settings(port=0, host="127.0.0.1", data_dir=str(tmp_path / "data"), mode="solo"))
    await node.start(preload=[])
    threads: set[str] = set()
    try:
        out = await node.import_gguf(
            gguf_file,
            "acme/tiny",
            progress=lambda f, s: threads.add(threading.current_thread().name),
        )
        assert out == tmp_path / "data" / "models" / "acme" / "tiny"
        assert threads == {"salut-mlx"}
        assert node.registry.has("acme/tiny")
        await node.load_model("acme/tiny")
        assert node.engine is not None and node.engine.is_loaded("acme/tiny")
    finally:
        await node.stop()
