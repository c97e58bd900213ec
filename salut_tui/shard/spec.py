"""What a node tells a runner subprocess to be: the JSON file passed as its only argument.

One definition of the contract between the node (which writes the file) and the runner (which
reads it). Frozen and validated on read, so a runner never starts half-configured.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, cast

ShardMode = Literal["pipeline", "tensor"]
RingBackend = Literal["ring"]

_MODES = ("pipeline", "tensor")


@dataclass(frozen=True, slots=True)
class RunnerSpec:
    """One rank of one sharded instance.

    Rank 0 is the coordinator (it alone receives requests and emits chunks) and, in pipeline
    mode, runs the first layers: rank r holds layers [layer_start, layer_end), ranks in layer
    order. In tensor mode every rank holds every layer (a slice of each), so the range is
    [0, num_layers).
    """

    instance_id: str
    model_path: str
    model_id: str
    rank: int
    world_size: int
    layer_start: int
    layer_end: int
    num_layers: int
    mode: ShardMode = "pipeline"
    backend: RingBackend = "ring"
    hostfile: str = ""  # path of the MLX ring hostfile (JSON list of per-rank address lists)
    max_tokens_default: int = 512

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in a world of {self.world_size}")
        if self.mode not in _MODES:
            raise ValueError(f"unknown shard mode {self.mode!r}")
        if self.backend != "ring":
            raise ValueError(f"unknown distributed backend {self.backend!r}")
        if not 0 <= self.layer_start < self.layer_end <= self.num_layers:
            raise ValueError(
                f"layers [{self.layer_start}, {self.layer_end}) do not fit a model of "
                f"{self.num_layers} layers"
            )
        if self.mode == "tensor" and (self.layer_start, self.layer_end) != (0, self.num_layers):
            raise ValueError("in tensor mode every rank holds every layer")
        if self.max_tokens_default < 1:
            raise ValueError("max_tokens_default must be at least 1")

    @property
    def is_coordinator(self) -> bool:
        return self.rank == 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunnerSpec:
        body = json.loads(text)
        if not isinstance(body, dict):
            raise ValueError("a runner spec is a JSON object")
        return cls(
            instance_id=str(body["instance_id"]),
            model_path=str(body["model_path"]),
            model_id=str(body["model_id"]),
            rank=int(body["rank"]),
            world_size=int(body["world_size"]),
            layer_start=int(body["layer_start"]),
            layer_end=int(body["layer_end"]),
            num_layers=int(body["num_layers"]),
            mode=cast(ShardMode, body.get("mode", "pipeline")),
            backend=cast(RingBackend, body.get("backend", "ring")),
            hostfile=str(body.get("hostfile", "")),
            max_tokens_default=int(body.get("max_tokens_default", 512)),
        )

    def write(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> RunnerSpec:
        return cls.from_json(path.read_text(encoding="utf-8"))


def write_ring_hostfile(path: Path, addresses: list[list[str]]) -> None:
    """The MLX ring hostfile: for each rank, the "ip:port" addresses that rank binds; rank r
    connects to rank r+1's addresses (one TCP connection per address)."""
    path.write_text(json.dumps(addresses), encoding="utf-8")
