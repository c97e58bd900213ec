"""Runner subprocesses on 127.0.0.1 for the shard tests: specs, a ring hostfile, the pipes."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from salut_tui.blas import OPT_OUT_ENV
from salut_tui.engine.types import Chunk, Error, Finish, GenerationRequest, Token
from salut_tui.shard.protocol import (
    ChunkOut,
    Fatal,
    Generate,
    Message,
    NodeMessage,
    Ready,
    decode,
    encode_line,
)
from salut_tui.shard.spec import RunnerSpec, write_ring_hostfile


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def even_split(num_layers: int, world: int) -> list[tuple[int, int]]:
    bounds = [num_layers * r // world for r in range(world + 1)]
    return [(bounds[r], bounds[r + 1]) for r in range(world)]


@dataclass
class RunnerProcess:
    spec: RunnerSpec
    process: subprocess.Popen
    messages: queue.Queue = field(default_factory=queue.Queue)
    stderr: list[str] = field(default_factory=list)

    def start_readers(self) -> None:
        def out() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.messages.put(decode(line))
            self.messages.put(None)  # EOF

        def err() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.stderr.append(line.decode(errors="replace"))

        threading.Thread(target=out, daemon=True).start()
        threading.Thread(target=err, daemon=True).start()

    def send(self, message: NodeMessage) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(encode_line(message))
        self.process.stdin.flush()

    def next_message(self, timeout: float) -> Message | None:
        return self.messages.get(timeout=timeout)

    def wait_for(self, kind: type, timeout: float) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            message = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            if message is None:
                raise AssertionError(f"runner {self.spec.rank} ended: {''.join(self.stderr)}")
            if isinstance(message, kind):
                return message
            if isinstance(message, Fatal):
                raise AssertionError(f"runner {self.spec.rank} fatal: {message.message}")


class Cluster:
    """`world` runners of one instance of the model in `model_path`, on 127.0.0.1."""

    def __init__(
        self,
        tmp: Path,
        model_path: Path,
        model_id: str,
        world: int,
        num_layers: int,
        mode: str = "pipeline",
        splits: list[tuple[int, int]] | None = None,
        env: dict[str, str] | None = None,
        ranks: list[int] | None = None,
        model_paths: dict[int, Path] | None = None,
        hostfiles: list[list[list[str]]] | None = None,
    ) -> None:
        """`ranks`: start only these (the others never join), default all; `model_paths`: a
        rank's own copy of the model, when not `model_path`; `hostfiles`: each rank's own ring
        hostfile (a relayed ring, see `RelayedRing`) instead of one direct one."""
        tmp.mkdir(parents=True, exist_ok=True)
        ports = free_ports(world)
        hostfile = tmp / "hostfile.json"
        write_ring_hostfile(hostfile, [[f"127.0.0.1:{p}"] for p in ports])
        for rank, entries in enumerate(hostfiles or []):
            write_ring_hostfile(tmp / f"hostfile{rank}.json", entries)
        if mode == "tensor":
            splits = [(0, num_layers)] * world
        splits = splits or even_split(num_layers, world)
        self.runners: list[RunnerProcess] = []
        self.chunks: dict[str, list[Chunk]] = {}  # every chunk rank 0 sent, by request id
        self.done: set[str] = set()  # request ids whose last chunk came
        run_env = {
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "SALUT_RUNNER_LOG": "INFO",
            # The same BLAS as the engine in the test process: like for like.
            OPT_OUT_ENV: "1",
            **(env or {}),
        }
        for rank in range(world) if ranks is None else ranks:
            spec = RunnerSpec(
                instance_id="test",
                model_path=str((model_paths or {}).get(rank, model_path)),
                model_id=model_id,
                rank=rank,
                world_size=world,
                layer_start=splits[rank][0],
                layer_end=splits[rank][1],
                num_layers=num_layers,
                mode=mode,  # type: ignore[arg-type]
                hostfile=str(tmp / f"hostfile{rank}.json" if hostfiles else hostfile),
                max_tokens_default=64,
            )
            spec_path = tmp / f"spec{rank}.json"
            spec.write(spec_path)
            process = subprocess.Popen(
                [sys.executable, "-m", "salut_tui.shard.runner", str(spec_path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=run_env,
            )
            runner = RunnerProcess(spec, process)
            runner.start_readers()
            self.runners.append(runner)

    @property
    def root(self) -> RunnerProcess:
        return self.runners[0]

    def wait_ready(self, timeout: float = 90.0) -> list[Ready]:
        return [r.wait_for(Ready, timeout) for r in self.runners]  # type: ignore[misc]

    def generate(self, requests: list[GenerationRequest], timeout: float = 60.0) -> dict:
        """Send every request at once to rank 0; each request id's chunks until its last."""
        for request in requests:
            assert request.request_id not in self.chunks, "a request id is used once"
            self.chunks[request.request_id] = []
            self.root.send(Generate(request))
        ids = [r.request_id for r in requests]
        self.wait_until(lambda: all(i in self.done for i in ids), timeout)
        return {i: self.chunks[i] for i in ids}

    def start(self, request: GenerationRequest, timeout: float = 60.0) -> None:
        """Send one request and return once its first chunk came (it is decoding)."""
        assert request.request_id not in self.chunks, "a request id is used once"
        self.chunks[request.request_id] = []
        self.root.send(Generate(request))
        self.wait_until(lambda: bool(self.chunks.get(request.request_id)), timeout)

    def wait_until(self, condition, timeout: float) -> None:
        """Read rank 0's messages (every chunk lands in `chunks`) until `condition()`."""
        deadline = time.monotonic() + timeout
        while not condition():
            message = self.root.next_message(max(0.01, deadline - time.monotonic()))
            if message is None or isinstance(message, Fatal):
                raise AssertionError(f"rank 0 ended: {message} {''.join(self.root.stderr)}")
            if isinstance(message, ChunkOut):
                self.chunks.setdefault(message.request_id, []).append(message.chunk)
                if isinstance(message.chunk, Finish | Error):
                    self.done.add(message.request_id)

    def close(self) -> None:
        for runner in self.runners:
            if runner.process.poll() is None:
                runner.process.send_signal(signal.SIGKILL)
        for runner in self.runners:
            runner.process.wait(timeout=10)
            for pipe in (runner.process.stdin, runner.process.stdout, runner.process.stderr):
                if pipe is not None:
                    pipe.close()


def token_ids(chunks: list[Chunk]) -> list[int]:
    return [c.token_id for c in chunks if isinstance(c, Token) and c.token_id is not None]


def text_of(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, Token))


class RelayedRing:
    """The relays of a `world`-rank ring, every ring connection a tunnel of a real encrypted
    peer link between in-process nodes (`tests/link_mesh`), on a loop in a thread of its own so
    that the blocking `Cluster` can drive the runners. `hostfiles` go to `Cluster`."""

    def __init__(self, tmp: Path, world: int, instance: str = "test") -> None:
        import asyncio

        from tests.link_mesh import Mesh
        from tests.test_shard_relay import _relays

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

        async def build() -> tuple:
            mesh = await Mesh.build(tmp, [f"n{i}" for i in range(world)])
            relays = _relays(mesh, instance)
            hostfiles = [await relays[n.node_id].start(join_timeout=120) for n in mesh.nodes]
            return mesh, [relays[n.node_id] for n in mesh.nodes], hostfiles

        self.mesh, self.relays, self.hostfiles = self._run(build())

    def _run(self, coroutine):  # type: ignore[no-untyped-def]
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def frames(self) -> int:
        """Tunnel frames every relay sent into the links so far (each ring message relayed
        crosses one: two relays carry it, one sends it)."""
        return sum(r.counts.frames_out for r in self.relays)

    def close(self) -> None:
        async def close() -> None:
            for relay in self.relays:
                await relay.close()
            await self.mesh.close()

        try:
            self._run(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
