"""One runner subprocess of one sharded instance on this node: start, talk, watch, stop.

The runner (`python -m salut_tui.shard.runner SPEC`) speaks JSON lines (`protocol`). This side
writes its spec and ring hostfile into the instance's directory, reads its messages, multiplexes
concurrent generations over its one stdin/stdout (rank 0 only) under ids of its own (requests
from several nodes could carry the same id), and reports the runner's end once, with a reason.

A runner never outlives its node: it gets SIGKILL when the node dies (PR_SET_PDEATHSIG on
Linux) and exits by itself when its stdin closes (any OS). `stop` asks politely (shutdown),
then SIGTERM, then SIGKILL, and always reaps the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import itertools
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

from salut_tui.engine.types import Chunk, Error, Finish, GenerationRequest
from salut_tui.shard.protocol import (
    Cancel,
    ChunkOut,
    Fatal,
    Generate,
    NodeMessage,
    ProtocolError,
    Ready,
    Shutdown,
    Stats,
    decode,
    encode_line,
)
from salut_tui.shard.spec import RunnerSpec, write_ring_hostfile

log = logging.getLogger(__name__)

RUNNER_COMMAND = (sys.executable, "-m", "salut_tui.shard.runner")
SHUTDOWN_GRACE = 5.0  # seconds a runner gets to leave after `shutdown`, then SIGTERM
TERM_GRACE = 2.0  # then SIGKILL
_PR_SET_PDEATHSIG = 1
_LINE_LIMIT = 16 * 1024 * 1024  # one protocol line (a chunk can carry a long text)


def shard_failed(message: str) -> Error:
    return Error(message, type="server_error", code="shard_failed", status=503)


def _pdeathsig() -> Callable[[], None] | None:
    """A preexec function that makes the child get SIGKILL when its parent dies (Linux only).
    libc is looked up here, before the fork: the child only makes one system call."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec


class RunnerSupervisor:
    def __init__(
        self,
        spec: RunnerSpec,
        workdir: Path,
        hostfile: list[list[str]],
        *,
        on_exit: Callable[[str], None],
        command: tuple[str, ...] = RUNNER_COMMAND,
    ) -> None:
        self.spec = spec
        self.workdir = workdir
        self._hostfile = hostfile
        self._on_exit = on_exit  # called once, with why the runner ended
        self._command = command
        self.process: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Future[Ready] | None = None
        self.stats = Stats(0.0, 0)
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.ended: str | None = None  # why the runner ended, once it has
        self._fatal: str | None = None
        self._stopping = False
        self._streams: dict[str, asyncio.Queue[Chunk]] = {}
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task] = []

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        hostfile = self.workdir / "hostfile.json"
        write_ring_hostfile(hostfile, self._hostfile)
        spec = replace(self.spec, hostfile=str(hostfile))
        self.spec = spec
        spec_path = self.workdir / "spec.json"
        spec.write(spec_path)
        env = {**os.environ, "MLX_RANK": str(spec.rank), "MLX_HOSTFILE": str(hostfile)}
        self.ready = asyncio.get_running_loop().create_future()
        self.process = await asyncio.create_subprocess_exec(
            *self._command, str(spec_path), env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT, start_new_session=True,  # Ctrl-C is for the node to handle
            preexec_fn=_pdeathsig(),
        )  # fmt: skip
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]
        log.info(
            "shard %s: runner rank %d/%d started (pid %d)",
            spec.instance_id, spec.rank, spec.world_size, self.process.pid,
        )  # fmt: skip

    # ---- messages from the runner ------------------------------------------------------------
    async def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        while line := await stdout.readline():
            try:
                message = decode(line)
            except ProtocolError as exc:
                log.warning("shard %s: bad line from the runner: %s", self.spec.instance_id, exc)
                continue
            if isinstance(message, ChunkOut):
                queue = self._streams.get(message.request_id)
                if queue is not None:
                    queue.put_nowait(message.chunk)
            elif isinstance(message, Stats):
                self.stats = message
            elif isinstance(message, Ready):
                if self.ready is not None and not self.ready.done():
                    self.ready.set_result(message)
            elif isinstance(message, Fatal):
                self._fatal = message.message
        code = await self.process.wait()
        self._ended(self._exit_reason(code))

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.stderr_tail.append(text)
            log.debug("shard %s runner: %s", self.spec.instance_id, text)

    def _exit_reason(self, code: int) -> str:
        if self._fatal:
            return self._fatal
        rank = f"rank {self.spec.rank}'s runner"
        if code < 0:
            return f"{rank} was killed by signal {signal.Signals(-code).name}"
        return f"{rank} exited with code {code}"

    def _ended(self, reason: str) -> None:
        if self.ended is not None:
            return
        self.ended = reason
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(RuntimeError(reason))
            self.ready.exception()  # retrieved: nobody may be waiting any more
        self.fail_streams(reason)
        self._on_exit(reason)

    def fail_streams(self, reason: str) -> None:
        """Every in-flight generation ends now with a 503 shard_failed."""
        for queue in self._streams.values():
            queue.put_nowait(shard_failed(f"the sharded model failed: {reason}"))
        self._streams.clear()

    # ---- talking to the runner -----------------------------------------------------------------
    async def send(self, message: NodeMessage) -> None:
        if self.process is None or self.process.stdin is None or self.ended is not None:
            raise ConnectionError("the runner is not running")
        self.process.stdin.write(encode_line(message))
        await self.process.stdin.drain()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Chunks of one generation on this (rank 0) runner; closing early cancels it."""
        if self.ended is not None or self._stopping:
            yield shard_failed(f"the sharded model is not running: {self.ended or 'stopping'}")
            return
        inner = f"s{next(self._ids)}"
        queue: asyncio.Queue[Chunk] = asyncio.Queue()
        self._streams[inner] = queue
        finished = False
        try:
            await self.send(Generate(replace(request, request_id=inner)))
            while True:
                chunk = await queue.get()
                finished = isinstance(chunk, Finish | Error)
                yield chunk
                if finished:
                    return
        except (ConnectionError, BrokenPipeError) as exc:
            finished = True
            yield shard_failed(f"the sharded model's runner is gone ({exc})")
        finally:
            self._streams.pop(inner, None)
            if not finished and self.ended is None:
                with contextlib.suppress(ConnectionError, BrokenPipeError, RuntimeError):
                    await self.send(Cancel(inner))

    # ---- stopping ------------------------------------------------------------------------------
    async def stop(self, reason: str = "stopped", grace: float = SHUTDOWN_GRACE) -> None:
        """End the runner (politely, then not) and reap it; safe to call more than once."""
        self._stopping = True
        self.fail_streams(reason)
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ConnectionError, BrokenPipeError, RuntimeError):
                await self.send(Shutdown(reason))
            for sig, wait in ((None, grace), (signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, 10)):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(sig)
                try:
                    await asyncio.wait_for(asyncio.shield(process.wait()), wait)
                    break
                except TimeoutError:
                    continue
        if process is not None and process.stdin is not None:
            process.stdin.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._ended(reason)
