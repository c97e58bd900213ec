"""One rank's value on every rank, passed hop by hop around the ring: the cheapest share.

MLX's ring `all_sum` of a small array costs 2 x (size - 1) messages per rank, each a round of
the ring (for 2 ranks: 4 messages on the wire and 2 sequential exchanges), and through Salut's
relay every message is a sealed tunnel frame (~0.3-0.5 ms here). Passing the value along
instead costs size - 1 messages in all: the source sends it to its right neighbour, each rank
receives it from its left one and sends it on, until the rank just before the source has it.

Order: a `recv` has no inputs, so inside one lazy graph MLX may schedule it before work it
must follow (the rank's own pipeline `send` of the same step: a deadlock), and two of them in
any order. So every pass is scheduled at once with `mx.async_eval`, after `after` (also
scheduled first): the ring's messages then leave and arrive in call order on every rank, and
nothing blocks the caller (the step's graph stays lazy, as mlx-lm's generator wants it).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx


def pass_along(
    value: mx.array | None,
    shape: tuple[int, ...],
    dtype: mx.Dtype,
    source: int,
    group: Any,
    *,
    after: mx.array | None = None,
    stream: Any = None,
) -> mx.array:
    """`value` of rank `source` (the others pass None, `shape` and `dtype` say what arrives),
    on every rank of `group`, scheduled but not waited for."""
    rank, size = group.rank(), group.size()
    left, right = (rank - 1) % size, (rank + 1) % size
    if after is not None:
        mx.async_eval(after)
    if rank == source:
        assert value is not None
        out = value
    else:
        out = mx.distributed.recv(shape, dtype, left, group=group, stream=stream)
    if right != source:
        sent = mx.distributed.send(out, right, group=group, stream=stream)
        out = mx.depends(out, sent)
    mx.async_eval(out)
    return out
