"""Shared helpers for the engine tests (a real Engine on the tiny model)."""

from __future__ import annotations

from pathlib import Path

from salut_tui.config import Settings
from salut_tui.engine.engine import Engine
from salut_tui.engine.registry import ModelRegistry
from salut_tui.engine.types import Chunk, Error, Finish, GenerationRequest, SamplingParams, Token
from salut_tui.events import EventBus

HELLO = ({"role": "user", "content": "Hello"},)


def make_engine(tmp_path: Path, model_id: str, model_path: Path, **settings) -> tuple[Engine, list]:
    """An engine (not started) that knows the tiny model, and the list its events land in."""
    s = Settings(models={model_id: str(model_path)}, data_dir=str(tmp_path / "data"), **settings)
    events = EventBus()
    seen: list = []
    events.subscribe(seen.append)
    return Engine(s, ModelRegistry(s), events), seen


def chat(model: str, messages=HELLO, **sampling) -> GenerationRequest:
    sampling.setdefault("temperature", 0.0)
    return GenerationRequest(model, messages=messages, sampling=SamplingParams(**sampling))


async def collect(engine: Engine, request: GenerationRequest) -> tuple[str, list[Chunk]]:
    chunks = [chunk async for chunk in engine.generate(request)]
    text = "".join(c.text for c in chunks if isinstance(c, Token))
    return text, chunks


def final(chunks: list[Chunk]) -> Finish | Error:
    last = chunks[-1]
    assert isinstance(last, Finish | Error)
    assert all(isinstance(c, Token) for c in chunks[:-1]), "exactly one terminal chunk, last"
    return last
