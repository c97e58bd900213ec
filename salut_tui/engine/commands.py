"""What the asyncio side asks of the MLX thread: one frozen dataclass per command.

The loop puts commands on the worker's queue; the thread takes them between decode steps and
handles each with a `match` on its type. Replies travel as values: chunks to a request's sink
(on the loop thread), results or exceptions in a command's `done` future.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salut_tui.engine.loader import LoadedModelInfo, Progress
from salut_tui.engine.types import Error, GenerationRequest

Sink = Callable[[Any], None]  # receives a request's chunks on the loop thread


@dataclass(frozen=True, slots=True)
class Submit:
    """Start generating: `prompt` is already tokenized (off this thread) and known to fit."""

    key: int
    request: GenerationRequest
    prompt: list[int]
    sink: Sink
    # Built off this thread too: the response_format mask (engine/structured.py), if any.
    processors: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Cancel:
    """The consumer left: take the request out of its batch and finish it as cancelled."""

    key: int


@dataclass(frozen=True, slots=True)
class Load:
    model_id: str
    path: Path
    progress: Progress
    done: Future[LoadedModelInfo]


@dataclass(frozen=True, slots=True)
class Unload:
    model_id: str
    done: Future[None]


@dataclass(frozen=True, slots=True)
class Call:
    """Run `fn` between decode steps (MLX work that is not a generation, e.g. a GGUF import)."""

    fn: Callable[[], Any]
    done: Future[Any]


@dataclass(frozen=True, slots=True)
class Stop:
    """End every request with `final`, free the models, end the thread."""

    final: Error


Command = Submit | Cancel | Load | Unload | Call | Stop
