"""One node's part of one sharded instance: its ring relay, its runner, its watchdogs, and its
state (lifecycle.py). Every failure, whatever noticed it, becomes one event; a failed part is
torn down at once: in-flight streams end with shard_failed, the runner is stopped and reaped,
the relay closed, the instance's directory removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from salut_tui.shard.join import JoinOrder
from salut_tui.shard.lifecycle import Event, State, advance
from salut_tui.shard.relay import OpenTunnel, RingRelay
from salut_tui.shard.spec import RunnerSpec
from salut_tui.shard.supervisor import RUNNER_COMMAND, RunnerSupervisor

log = logging.getLogger(__name__)

RING_BROKEN_GRACE = 0.5  # seconds a peer's own failure report may take to arrive
FAILED_GRACE = 1.0  # a failed group cannot shut down cleanly: little patience before SIGTERM


class ShardFailed(Exception):
    """The instance failed (or was stopped) before it was ready; the reason is the message."""


class ShardInstance:
    def __init__(
        self,
        order: JoinOrder,
        model_path: Path,
        workdir: Path,
        open_tunnel: OpenTunnel,
        *,
        command: tuple[str, ...] = RUNNER_COMMAND,
        on_change: Callable[[ShardInstance], None] = lambda inst: None,
    ) -> None:
        self.order = order
        self.model_path = model_path
        self.workdir = workdir
        self.state: State = "starting"
        self.reason = ""  # why it failed or stopped
        self.blamed: str | None = None  # the participant (node id) whose failure ended it
        self.was_ready = False
        self.memory_bytes = 0
        # On the coordinator: each participant's "ready" (rank -> its memory), so that the
        # instance is ready only when every node says so.
        self.peer_memory: dict[int, int] = {}
        self._peers_ready = asyncio.Event()
        if order.rank != 0 or order.world_size == 1:
            self._peers_ready.set()
        self._on_change = on_change
        self._command = command
        left, right = order.neighbours()
        self.relay = RingRelay(
            order.instance_id, rank=order.rank, world_size=order.world_size,
            left_node=left.node_id, right_node=right.node_id, open_tunnel=open_tunnel,
            on_broken=self._ring_broken,
        )  # fmt: skip
        self.supervisor: RunnerSupervisor | None = None
        self._settled = asyncio.Event()  # left "starting"
        self._ended = asyncio.Event()  # failed, stopping or stopped
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._stopping: asyncio.Task | None = None

    @property
    def instance_id(self) -> str:
        return self.order.instance_id

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """A task that belongs to this instance: cancelled when it stops."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        order = self.order
        try:
            hostfile = await self.relay.start(order.join_timeout)
        except OSError as exc:  # no loopback port to listen on
            self.event("runner_died", f"cannot start the ring relay: {exc}")
            return
        spec = RunnerSpec(
            instance_id=order.instance_id, model_path=str(self.model_path),
            model_id=order.model_id, rank=order.rank, world_size=order.world_size,
            layer_start=order.me.layer_start, layer_end=order.me.layer_end,
            num_layers=order.num_layers, mode=order.mode,
            max_tokens_default=order.max_tokens_default,
        )  # fmt: skip
        self.supervisor = RunnerSupervisor(
            spec, self.workdir, hostfile, command=self._command,
            on_exit=lambda why: self.event("runner_died", why),
        )  # fmt: skip
        try:
            await self.supervisor.start()
        except OSError as exc:
            self.event("runner_died", f"cannot start the runner: {exc}")
            return
        self.spawn(self._watchdog())

    async def _watchdog(self) -> None:
        """A ring that does not form, or weights that do not load, fail the instance in time:
        alone, MLX's rank 0 would wait in its init for minutes."""
        order, relay = self.order, self.relay
        joined = asyncio.gather(relay.inbound.wait(), relay.outbound.wait())
        try:
            await asyncio.wait_for(joined, order.join_timeout)
        except TimeoutError:
            names = {rank: p.name for rank, p in enumerate(order.participants)}
            missing = "; ".join(relay.missing(names))
            self.event(
                "join_timeout",
                f"the ring of '{order.model_id}' did not form within {order.join_timeout:.0f} s "
                f"(rank {order.rank} on {order.me.name}: {missing})",
            )
            return
        assert self.supervisor is not None and self.supervisor.ready is not None
        try:
            ready = await asyncio.wait_for(
                asyncio.shield(self.supervisor.ready), order.load_timeout
            )
        except TimeoutError:
            self.event(
                "load_timeout", f"'{order.model_id}' did not load within {order.load_timeout:.0f} s"
            )
            return
        except RuntimeError:
            return  # the runner ended: its exit is the event
        self.memory_bytes = ready.memory_bytes
        try:
            await asyncio.wait_for(self._peers_ready.wait(), order.load_timeout)
        except TimeoutError:
            self.event("load_timeout", "a participant did not report ready in time")
            return
        self.event("ready")

    def _ring_broken(self, why: str) -> None:
        # A ring connection ends when any rank fails; that rank's own report (its runner's
        # message, over the link) says why better, so it gets a moment to arrive first.
        async def later() -> None:
            await asyncio.sleep(RING_BROKEN_GRACE)
            self.event("runner_died", why)

        if self.state in ("starting", "ready"):
            self.spawn(later())

    def peer_ready(self, rank: int, memory_bytes: int) -> None:
        self.peer_memory[rank] = memory_bytes
        if len(self.peer_memory) == self.order.world_size - 1:
            self._peers_ready.set()

    def event(self, event: Event, reason: str = "") -> None:
        new = advance(self.state, event)
        if new is None:
            return
        log.info("shard %s rank %d: %s -> %s (%s) %s", self.instance_id, self.order.rank,
                 self.state, new, event, reason)  # fmt: skip
        self.state = new
        self.was_ready = self.was_ready or new == "ready"
        if new == "failed" and not self.reason:
            self.reason = reason
            if self.supervisor is not None:
                self.supervisor.fail_streams(reason)
        if new != "starting":
            self._settled.set()
        if new not in ("starting", "ready"):
            self._ended.set()
        if new == "failed":
            self._stopping = asyncio.get_running_loop().create_task(self.stop(reason))
        if new == "stopped":
            self._stopped.set()
        self._on_change(self)

    async def wait_ready(self) -> None:
        await self._settled.wait()
        if self.state != "ready":
            raise ShardFailed(self.reason or f"the instance is {self.state}")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def wait_ended(self) -> None:
        """Until it failed or stopped."""
        await self._ended.wait()

    async def stop(self, reason: str = "unloaded") -> None:
        """Tear this node's part down (idempotent; concurrent callers all wait for the end)."""
        if self.state in ("stopping", "stopped"):
            await self._stopped.wait()
            return
        failed = self.state == "failed"
        self.reason = self.reason or reason
        self.event("stop")
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self.supervisor is not None:
            await self.supervisor.stop(self.reason, grace=FAILED_GRACE if failed else 5.0)
        await self.relay.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.workdir)
        self.event("exited")
