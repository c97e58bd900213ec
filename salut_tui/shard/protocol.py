"""The JSON-lines protocol between a node and its runner subprocess (pure).

One JSON object per line. The runner writes `ready`, `chunk`, `stats` and `fatal` on its stdout;
the node writes `generate`, `cancel` and `shutdown` on the runner's stdin (only rank 0, the
coordinator, is sent `generate` and `cancel`). Requests and chunks use the same JSON forms as
the peer link's request proxying (`salut_tui.cluster.wire`), so a chunk can be relayed as is.
stdin reaching EOF means the node died: the runner exits at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from salut_tui.cluster.wire import (
    chunk_from_bytes,
    chunk_to_bytes,
    request_from_json,
    request_to_json,
)
from salut_tui.engine.types import Chunk, GenerationRequest


class ProtocolError(ValueError):
    """A line that is not a message of this protocol."""


# ---- runner -> node --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ready:
    """The ring is up and this rank's weights are loaded."""

    rank: int
    memory_bytes: int
    layers: tuple[int, int]


@dataclass(frozen=True, slots=True)
class ChunkOut:
    """One chunk of one request's stream (rank 0 only); the last is a Finish or an Error."""

    request_id: str
    chunk: Chunk


@dataclass(frozen=True, slots=True)
class Stats:
    """About once a second from every rank."""

    tokens_per_second: float
    in_flight: int


@dataclass(frozen=True, slots=True)
class Fatal:
    """Sent just before the runner exits non-zero (ring lost, load failed...)."""

    message: str


# ---- node -> runner --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Generate:
    request: GenerationRequest


@dataclass(frozen=True, slots=True)
class Cancel:
    request_id: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    """End the instance: rank 0 tells every rank, and all exit 0."""

    reason: str = field(default="")


RunnerMessage = Ready | ChunkOut | Stats | Fatal
NodeMessage = Generate | Cancel | Shutdown
Message = RunnerMessage | NodeMessage


def encode(message: Message) -> str:
    """One line of JSON (without the newline)."""
    body: dict
    if isinstance(message, Ready):
        body = {
            "type": "ready",
            "rank": message.rank,
            "memory_bytes": message.memory_bytes,
            "layers": list(message.layers),
        }
    elif isinstance(message, ChunkOut):
        body = {
            "type": "chunk",
            "request_id": message.request_id,
            "chunk": json.loads(chunk_to_bytes(message.chunk)),
        }
    elif isinstance(message, Stats):
        body = {
            "type": "stats",
            "tokens_per_second": message.tokens_per_second,
            "in_flight": message.in_flight,
        }
    elif isinstance(message, Fatal):
        body = {"type": "fatal", "message": message.message}
    elif isinstance(message, Generate):
        body = {"type": "generate", "request": request_to_json(message.request)}
    elif isinstance(message, Cancel):
        body = {"type": "cancel", "request_id": message.request_id}
    else:
        body = {"type": "shutdown", "reason": message.reason}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def encode_line(message: Message) -> bytes:
    return (encode(message) + "\n").encode("utf-8")


def decode(line: str | bytes) -> Message:
    """The message on one line; raises ProtocolError for anything else."""
    try:
        body = json.loads(line)
        if not isinstance(body, dict):
            raise ProtocolError("a message is a JSON object")
        kind = body.get("type")
        if kind == "ready":
            start, end = body["layers"]
            return Ready(int(body["rank"]), int(body["memory_bytes"]), (int(start), int(end)))
        if kind == "chunk":
            chunk = chunk_from_bytes(json.dumps(body["chunk"]).encode())
            return ChunkOut(str(body["request_id"]), chunk)
        if kind == "stats":
            return Stats(float(body["tokens_per_second"]), int(body["in_flight"]))
        if kind == "fatal":
            return Fatal(str(body["message"]))
        if kind == "generate":
            return Generate(request_from_json(body["request"]))
        if kind == "cancel":
            return Cancel(str(body["request_id"]))
        if kind == "shutdown":
            return Shutdown(str(body.get("reason", "")))
    except ProtocolError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed runner message: {exc}") from exc
    raise ProtocolError(f"unknown runner message type {body.get('type')!r}")
