"""One rank of one sharded instance, as a subprocess of its node.

    python -m salut_tui.shard.runner SPEC_JSON_PATH

The process owns MLX: it joins the ring group (`mx.distributed.init(backend="ring")`, which reads
MLX_RANK and MLX_HOSTFILE from the environment; a ring group lives as long as its process, hence
one process per instance), loads its layers, says `ready`, then runs the SPMD loop of
`ShardSession` until told to shut down. Rank 0 takes `generate`/`cancel` from stdin and emits
`chunk`s; every rank emits `stats` about once a second. Any failure of the ring or of MLX is
unrecoverable for the group: the runner writes `fatal` and exits non-zero at once, and the node
tears the instance down. stdin EOF (the node died) exits at once too (see `channel`).
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salut_tui.engine.types import Error
from salut_tui.shard.admission import Admission, Admitted
from salut_tui.shard.channel import Channel
from salut_tui.shard.initguard import InitGuard
from salut_tui.shard.orders import FOLLOWER_SLEEP
from salut_tui.shard.protocol import (
    Cancel,
    ChunkOut,
    Fatal,
    Generate,
    Ready,
    Shutdown,
    Stats,
)
from salut_tui.shard.ringthreads import thread_ids, yield_ring_threads
from salut_tui.shard.ringwatch import RingWatch
from salut_tui.shard.spec import RunnerSpec

if TYPE_CHECKING:
    from salut_tui.shard.session import ShardSession

log = logging.getLogger("salut_tui.shard.runner")

EXIT_FATAL = 1
EXIT_USAGE = 2
STATS_EVERY_S = 1.0
FOLLOWER_SHUTDOWN_GRACE_S = 2.0  # a rank > 0 told to stop waits this long for rank 0's word


def init_group(spec: RunnerSpec) -> Any:
    """The ring group of this instance (None for a world of one)."""
    if spec.world_size == 1:
        return None
    import mlx.core as mx

    os.environ["MLX_RANK"] = str(spec.rank)
    os.environ["MLX_HOSTFILE"] = spec.hostfile
    group = mx.distributed.init(strict=True, backend=spec.backend)
    if group.size() != spec.world_size or group.rank() != spec.rank:
        raise RuntimeError(
            f"the ring made rank {group.rank()} of {group.size()}, the spec says "
            f"{spec.rank} of {spec.world_size}"
        )
    return group


def model_digest(path: Path, tokenizer: Any) -> bytes:
    """What every rank must agree on: the config and the tokenizer's vocabulary and stop ids
    (each node loads its own copy of the model, and ranks that tokenize or stop differently
    would fall out of step)."""
    digest = hashlib.sha256((path / "config.json").read_bytes())
    vocab = sorted(tokenizer.get_vocab().items()) if hasattr(tokenizer, "get_vocab") else []
    digest.update(json.dumps([vocab, sorted(tokenizer.eos_token_ids)]).encode())
    return digest.digest()[:8]


def check_same_model(group: Any, path: Path, tokenizer: Any) -> None:
    """Compare every rank's model digest (one all_gather); raise when any differs."""
    if group is None:
        return
    import mlx.core as mx
    import numpy as np

    mine = np.frombuffer(model_digest(path, tokenizer), dtype=np.uint32)
    every = np.array(mx.distributed.all_gather(mx.array(mine), group=group)).reshape(-1, 2)
    differing = [rank for rank, row in enumerate(every) if not np.array_equal(row, mine)]
    if differing:
        raise RuntimeError(
            f"the model files differ between ranks (rank {group.rank()} differs from ranks "
            f"{differing}): every node must hold the same version of the model"
        )


class Runner:
    def __init__(self, spec: RunnerSpec, channel: Channel) -> None:
        self.spec = spec
        self.channel = channel
        self._last_stats = 0.0
        self.session: ShardSession | None = None

    def run(self) -> None:
        # MLX is imported only now: `main` may first re-execute with another BLAS preloaded.
        import mlx.core as mx

        from salut_tui.shard.pipeline import load_shard
        from salut_tui.shard.session import ShardSession

        spec = self.spec
        before = thread_ids()
        with InitGuard():  # init holds the GIL: our own stdin reader cannot act meanwhile
            group = init_group(spec)
        if group is not None:
            log.info(
                "rank %d: %d ring threads yield their cores", spec.rank, yield_ring_threads(before)
            )
        shard = load_shard(
            Path(spec.model_path), group, spec.mode, spec.layer_start, spec.layer_end
        )
        log.info(
            "rank %d loaded layers [%d, %d): %d bytes of weights, peak %d bytes",
            spec.rank,
            spec.layer_start,
            spec.layer_end,
            shard.memory_bytes,
            mx.get_peak_memory(),
        )
        # Also a barrier: every rank loaded, so nobody waits on a loading peer mid-step.
        check_same_model(group, Path(spec.model_path), shard.tokenizer)
        self.channel.send(Ready(spec.rank, shard.memory_bytes, (spec.layer_start, spec.layer_end)))
        session = ShardSession(shard, group, spec.model_id, spec.max_tokens_default, self._emit)
        self.session = session
        admission = None
        if session.is_root:
            admission = Admission(
                self.channel.inbox, shard.tokenizer, session.context_length, spec.model_id
            )
            admission.start()
        while True:
            if admission is not None:
                self._take_commands(session, admission.ready)
            else:
                self._watch_shutdown()
                if session.idle:  # rank 0 will not share before most of the period is over
                    time.sleep(session.idle_period() * FOLLOWER_SLEEP)
            if not session.step():
                break
            self._stats(session)
        self._send_stats(session)

    def fail_streams(self, reason: str) -> None:
        """End every stream rank 0 still serves with an error (before `fatal`)."""
        session = self.session
        if session is None or not session.is_root:
            return
        error = Error(
            f"the sharded model '{self.spec.model_id}' failed: {reason}",
            code="shard_failed",
            status=503,
        )
        for request_id in list(session.texts):
            self._emit(request_id, error)

    def _emit(self, request_id: str, chunk: Any) -> None:
        self.channel.send(ChunkOut(request_id, chunk))

    def _take_commands(self, session: ShardSession, inbox: queue.SimpleQueue[Admitted]) -> None:
        wait = session.idle_period() if session.idle else 0.0
        deadline = time.monotonic() + wait
        while True:
            try:
                if wait > 0:
                    admitted = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
                    wait = 0.0  # something arrived: take the rest without waiting
                else:
                    admitted = inbox.get_nowait()
            except queue.Empty:
                return
            message = admitted.message
            if isinstance(message, Generate):
                assert admitted.prompt is not None
                session.submit(message.request, admitted.prompt)
            elif isinstance(message, Cancel):
                session.cancel(message.request_id)
            elif isinstance(message, Shutdown):
                session.shutdown()

    def _watch_shutdown(self) -> None:
        """Ranks > 0 get only shutdown; rank 0 normally relays it to them first."""
        try:
            message = self.channel.inbox.get_nowait()
        except queue.Empty:
            return
        if not isinstance(message, Shutdown):
            log.warning("rank %d ignores %s: only rank 0 serves", self.spec.rank, message)
        else:
            timer = threading.Timer(FOLLOWER_SHUTDOWN_GRACE_S, os._exit, args=(0,))
            timer.daemon = True
            timer.start()

    def _stats(self, session: ShardSession) -> None:
        if time.monotonic() - self._last_stats >= STATS_EVERY_S:
            self._send_stats(session)

    def _send_stats(self, session: ShardSession) -> None:
        self._last_stats = time.monotonic()
        self.channel.send(Stats(round(session.tokens_per_second(), 2), session.in_flight))


def main(argv: list[str] | None = None) -> None:
    if argv is None:  # the real entry point: the fast BLAS `salut serve` uses (inherited if set)
        from salut_tui.blas import maybe_reexec_with_fast_blas

        maybe_reexec_with_fast_blas()
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=os.environ.get("SALUT_RUNNER_LOG", "WARNING"),
        stream=sys.stderr,
        format="%(asctime)s runner %(levelname)s %(message)s",
    )
    if len(args) != 1:
        print("usage: python -m salut_tui.shard.runner SPEC_JSON_PATH", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks on demand, for debugging
    channel: Channel | None = None
    runner: Runner | None = None

    failing = threading.Lock()

    def fail(message: str) -> None:
        # Once only, whichever of the main thread and the ring watch gets here first.
        if not failing.acquire(blocking=False):
            threading.Event().wait()  # the other one is exiting the process
        if runner is not None:
            runner.fail_streams(message)
        if channel is not None:
            channel.send(Fatal(message))
        os._exit(EXIT_FATAL)

    def ring_lost(line: str) -> None:
        fail(f"the ring lost a peer ({line})")

    RingWatch(ring_lost).start()  # before Channel, so stray stdout goes through it too
    channel = Channel()
    channel.start()  # stdin EOF ends us even while the ring is still connecting
    try:
        spec = RunnerSpec.read(Path(args[0]))
        runner = Runner(spec, channel)
        runner.run()
    except BaseException as exc:  # ring lost, load failed, bad spec: the group is unusable
        log.exception("runner failed")
        fail(f"{type(exc).__name__}: {exc}")
    # Leave without interpreter teardown: MLX's streams and the ring's threads do not survive
    # a late cleanup, and there is nothing left to flush (stdout is written unbuffered).
    os._exit(0)


if __name__ == "__main__":
    main()
