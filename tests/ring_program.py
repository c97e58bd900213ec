"""A plain MLX ring program (no Salut code): one rank of `mx.distributed` with the ring backend,
configured by MLX_HOSTFILE and MLX_RANK. Prints one JSON line: an all_sum, a send/recv around
the ring, and (with `--rounds N`) mean round-trip times of small collectives. `--yield-threads`
lowers the priority of the ring's polling threads as the shard runner does (`shard/ringthreads`)."""

from __future__ import annotations

import json
import sys
import time

import mlx.core as mx


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 0
    if "--yield-threads" in sys.argv:  # as Salut's runner does (bench_relay compares)
        from salut_tui.shard.ringthreads import thread_ids, yield_ring_threads

        before = thread_ids()
        group = mx.distributed.init(backend="ring", strict=True)
        yield_ring_threads(before)
    else:
        group = mx.distributed.init(backend="ring", strict=True)
    rank, size = group.rank(), group.size()
    total = mx.distributed.all_sum(mx.arange(8, dtype=mx.float32) * (rank + 1))
    big = mx.distributed.all_sum(mx.full((1 << 20,), float(rank + 1)))  # 4 MB: many frames
    right, left = (rank + 1) % size, (rank - 1) % size
    mx.eval(total, big)
    # Evaluated apart: one eval could order the recv first on every rank (a deadlock).
    mx.eval(mx.distributed.send(mx.arange(5, dtype=mx.int32) + 100 * rank, right))
    got = mx.distributed.recv_like(mx.zeros(5, dtype=mx.int32), left)
    mx.eval(got)
    out: dict = {
        "rank": rank,
        "size": size,
        "all_sum": total.tolist(),
        "big_all_sum": [float(big.min()), float(big.max())],
        "received": got.tolist(),
    }
    if rounds:
        small = mx.ones(1024)  # 4 KB, about one token's hidden state of a small model
        mx.eval(mx.distributed.all_sum(small))
        start = time.perf_counter()
        for _ in range(rounds):
            mx.eval(mx.distributed.all_sum(small))
        out["all_sum_ms"] = (time.perf_counter() - start) / rounds * 1e3
        start = time.perf_counter()
        for _ in range(rounds):  # a token's trip around the ring: rank 0 starts, all relay
            if rank == 0:
                mx.eval(mx.distributed.send(small, right))
                mx.eval(mx.distributed.recv_like(small, left))
            else:
                x = mx.distributed.recv_like(small, left)
                mx.eval(mx.distributed.send(x, right))
        out["ring_trip_ms"] = (time.perf_counter() - start) / rounds * 1e3
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
