"""What nodes tell each other about a sharded instance, over the peer link (pure data).

shard.join    stream, coordinator -> each participant: a `JoinOrder`. The participant starts
              its relay and runner and answers with `JoinEvent`s: "started", later "ready"
              (its runner loaded its layers) or "failed" (with the reason; the stream then
              ends). The stream lives as long as the participant's part: the coordinator
              closing it means stop; the participant ending it means it stopped or failed;
              a lost link ends it on both sides, so either side tears down within the
              link's liveness bound (a few seconds) when the other dies.
shard.ring    tunnel, rank r's node -> rank r+1's node: one MLX ring connection (relay.py).
shard.unload  unary, any node -> the coordinator: {"model"}; answers {"unloaded": [ids]}.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

JOIN = "shard.join"
UNLOAD = "shard.unload"

JOIN_TIMEOUT = 15.0  # seconds for a ring to form once its runners are started
LOAD_TIMEOUT = 600.0  # seconds for every rank to load its layers once the ring formed


@dataclass(frozen=True, slots=True)
class Participant:
    node_id: str
    name: str
    layer_start: int
    layer_end: int


@dataclass(frozen=True, slots=True)
class JoinOrder:
    instance_id: str
    model_id: str
    mode: Literal["pipeline", "tensor"]
    rank: int
    num_layers: int
    participants: tuple[Participant, ...]  # by rank; rank 0 is the coordinator
    max_tokens_default: int = 512
    join_timeout: float = JOIN_TIMEOUT
    load_timeout: float = LOAD_TIMEOUT

    @property
    def world_size(self) -> int:
        return len(self.participants)

    @property
    def me(self) -> Participant:
        return self.participants[self.rank]

    @property
    def coordinator(self) -> Participant:
        return self.participants[0]

    def neighbours(self) -> tuple[Participant, Participant]:
        """(left, right): the ranks this rank's ring connections come from and go to."""
        n = self.world_size
        return self.participants[(self.rank - 1) % n], self.participants[(self.rank + 1) % n]

    def for_rank(self, rank: int) -> JoinOrder:
        return JoinOrder(
            self.instance_id, self.model_id, self.mode, rank, self.num_layers, self.participants,
            self.max_tokens_default, self.join_timeout, self.load_timeout,
        )  # fmt: skip

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, body: dict) -> JoinOrder:
        participants = tuple(
            Participant(
                str(p["node_id"]), str(p["name"]), int(p["layer_start"]), int(p["layer_end"])
            )
            for p in body["participants"]
        )
        mode = body.get("mode", "pipeline")
        if mode not in ("pipeline", "tensor"):
            raise ValueError(f"unknown shard mode {mode!r}")
        order = cls(
            str(body["instance_id"]), str(body["model_id"]), mode, int(body["rank"]),
            int(body["num_layers"]), participants, int(body.get("max_tokens_default", 512)),
            float(body.get("join_timeout", JOIN_TIMEOUT)),
            float(body.get("load_timeout", LOAD_TIMEOUT)),
        )  # fmt: skip
        if not 0 < order.rank < order.world_size:
            raise ValueError(f"rank {order.rank} is not a participant's rank of {order.world_size}")
        return order


EventKind = Literal["started", "ready", "failed"]


@dataclass(frozen=True, slots=True)
class JoinEvent:
    event: EventKind
    memory_bytes: int = 0
    reason: str = ""

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> JoinEvent:
        body = json.loads(data)
        if body.get("event") not in ("started", "ready", "failed"):
            raise ValueError(f"unknown join event {body.get('event')!r}")
        return cls(body["event"], int(body.get("memory_bytes", 0)), str(body.get("reason", "")))
