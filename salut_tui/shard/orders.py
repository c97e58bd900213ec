"""What every rank must do before the next step, decided by rank 0 and shared with all ranks.

SPMD: every rank drives its own BatchGenerator, and they stay in step only if every rank inserts
and removes the same sequences at the same point. Rank 0 alone hears the node (requests, cancels,
shutdown) and alone sees the text (stop strings end requests there), so before each step it
broadcasts the orders of that step; the other ranks apply exactly those. The broadcast is passed
along the ring from rank 0 (`ringpass`: one message per rank boundary): a two-int32 header (the
payload's length, 0 on most steps, and `every`) and, only when there is something to say, the
JSON payload as bytes. It runs on the generator's stream, so it is ordered with the step's own
ring traffic on every rank.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from salut_tui.engine.types import SamplingParams
from salut_tui.shard.ringpass import pass_along


@dataclass(frozen=True, slots=True)
class Insert:
    """Start a sequence: the prompt tokens are rank 0's, so no rank re-tokenizes."""

    request_id: str
    prompt: tuple[int, ...]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None  # chosen by rank 0 when the client gave none

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            max_tokens=self.max_tokens,
            seed=self.seed,
        )


@dataclass(frozen=True, slots=True)
class Remove:
    """Take a sequence out of the batch (cancelled, or ended by a stop string)."""

    request_id: str


@dataclass(frozen=True, slots=True)
class Stop:
    """End the instance: every rank leaves its loop and exits 0."""


Order = Insert | Remove | Stop


def encode_orders(orders: list[Order]) -> bytes:
    items: list[dict[str, Any]] = []
    for order in orders:
        if isinstance(order, Insert):
            body = asdict(order)
            body["prompt"] = list(order.prompt)
            items.append({"insert": body})
        elif isinstance(order, Remove):
            items.append({"remove": order.request_id})
        else:
            items.append({"stop": True})
    return json.dumps(items, separators=(",", ":")).encode()


def decode_orders(data: bytes) -> list[Order]:
    orders: list[Order] = []
    for item in json.loads(data):
        if "insert" in item:
            body = dict(item["insert"])
            body["prompt"] = tuple(body["prompt"])
            orders.append(Insert(**body))
        elif "remove" in item:
            orders.append(Remove(str(item["remove"])))
        else:
            orders.append(Stop())
    return orders


@dataclass
class ShareSchedule:
    """When the ranks next exchange orders, the same on every rank: its state changes only with
    what every rank sees (the `every` rank 0 shares, whether the batch is empty).

    While requests run, orders are shared every `every` steps, which rank 0 picks so that a new
    request or a cancel waits about SHARE_PERIOD_S at most: a fast model skips the exchange on
    most steps (one ring message per rank boundary less per token), a slow one shares on
    every step. While idle, rank 0 shares every `idle_period()` even with nothing to say (that
    is also how the others notice a lost ring); the others sleep through most of it, since
    MLX's ring spins a core while it waits. The period grows after a second of idleness.
    """

    countdown: int = 0
    idle_streak: int = 0

    def due(self, busy: bool) -> bool:
        return not busy or self.countdown <= 0

    def shared(self, every: int, idle: bool) -> None:
        self.countdown = max(1, every)
        self.idle_streak = self.idle_streak + 1 if idle else 0

    def stepped(self) -> None:
        self.countdown -= 1

    def idle_period(self) -> float:
        return IDLE_FAST_S if self.idle_streak * IDLE_FAST_S < IDLE_SLOW_AFTER_S else IDLE_SLOW_S


SHARE_PERIOD_S = 0.05
MAX_EVERY = 32
IDLE_FAST_S = 0.01
IDLE_SLOW_S = 0.1
IDLE_SLOW_AFTER_S = 1.0
FOLLOWER_SLEEP = 0.8  # of the idle period: the others enter the exchange this late


def every_for(step_s: float) -> int:
    """Steps between exchanges for a step of `step_s` seconds (rank 0's choice)."""
    if step_s <= 0:
        return 1
    return max(1, min(MAX_EVERY, int(SHARE_PERIOD_S / step_s)))


class OrderBroadcast:
    def __init__(self, group: Any, stream: Any) -> None:
        self.group = group
        self.stream = stream
        self.is_root = group is None or group.rank() == 0

    def share(self, orders: list[Order], every: int) -> tuple[list[Order], int]:
        """Rank 0's `orders` and `every` on every rank (the others pass [] and 0)."""
        if self.group is None:
            return orders, 1  # alone, sharing costs nothing: every step
        payload = encode_orders(orders) if self.is_root and orders else b""
        mine = mx.array([len(payload), every], dtype=mx.int32) if self.is_root else None
        header = np.array(self._pass(mine, (2,), mx.int32))
        size, every = int(header[0]), int(header[1])
        if size == 0:
            return [], every
        buffer = mx.array(np.frombuffer(payload, dtype=np.uint8)) if self.is_root else None
        data = np.array(self._pass(buffer, (size,), mx.uint8), copy=False).tobytes()
        return (orders if self.is_root else decode_orders(data)), every

    def _pass(self, array: mx.array | None, shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array:
        result = pass_along(array, shape, dtype, 0, self.group, stream=self.stream)
        mx.eval(result)
        return result
