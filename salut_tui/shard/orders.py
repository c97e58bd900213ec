"""What every rank must do before the next step, decided by rank 0 and shared with all ranks.

SPMD: every rank drives its own BatchGenerator, and they stay in step only if every rank inserts
and removes the same sequences at the same point. Rank 0 alone hears the node (requests, cancels,
shutdown) and alone sees the text (stop strings end requests there), so before each step it
broadcasts the orders of that step; the other ranks apply exactly those. The broadcast is an
`all_sum` in which the other ranks add zeros: a one-int32 header (the payload's length, 0 on
most steps) and, only when there is something to say, the JSON payload as bytes. It runs on
the generator's stream, so it is ordered with the step's own ring traffic on every rank.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from salut_tui.engine.types import SamplingParams


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


class OrderBroadcast:
    def __init__(self, group: Any, stream: Any) -> None:
        self.group = group
        self.stream = stream
        self.is_root = group is None or group.rank() == 0

    def share(self, orders: list[Order]) -> list[Order]:
        """Rank 0's `orders` on every rank (the others pass an empty list)."""
        if self.group is None:
            return orders
        payload = encode_orders(orders) if self.is_root and orders else b""
        header = self._all_sum(mx.array([len(payload)], dtype=mx.int32))
        size = int(np.array(header)[0])
        if size == 0:
            return []
        if self.is_root:
            buffer = mx.array(np.frombuffer(payload, dtype=np.uint8))
        else:
            buffer = mx.zeros((size,), dtype=mx.uint8)
        data = np.array(self._all_sum(buffer), copy=False).tobytes()
        return orders if self.is_root else decode_orders(data)

    def _all_sum(self, array: mx.array) -> mx.array:
        result = mx.distributed.all_sum(array, group=self.group, stream=self.stream)
        mx.eval(result)
        return result
