"""Runner supervision with the real runner and the tiny model: concurrent generations over one
runner, a peer killed mid-stream (every stream ends with a 503 shard_failed), a runner blocked in
the ring's init stopped without leaving a port, and a runner that dies with its node."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from salut_tui.engine.types import Chunk, Error, Finish, GenerationRequest, SamplingParams, Token
from salut_tui.shard.relay import free_port
from salut_tui.shard.spec import RunnerSpec
from salut_tui.shard.supervisor import RunnerSupervisor


def _spec(model: Path, model_id: str, rank: int, world: int, layers: tuple[int, int]) -> RunnerSpec:
    return RunnerSpec(
        instance_id="t1", model_path=str(model), model_id=model_id, rank=rank, world_size=world,
        layer_start=layers[0], layer_end=layers[1], num_layers=2, max_tokens_default=32,
    )  # fmt: skip


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent, if any, reaps it later).
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


async def _collect(chunks) -> list[Chunk]:  # type: ignore[no-untyped-def]
    return [c async for c in chunks]


def _request(model_id: str, prompt: str, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(
        model=model_id, prompt=prompt, sampling=SamplingParams(temperature=0, max_tokens=max_tokens)
    )


async def test_generations_multiplex_and_a_killed_peer_ends_every_stream(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    ports = [free_port(), free_port()]
    hostfile = [[f"127.0.0.1:{p}"] for p in ports]
    exits: list[list[str]] = [[], []]
    sups = [
        RunnerSupervisor(
            _spec(tiny_model_path, tiny_model_id, rank, 2, ((0, 1), (1, 2))[rank]),
            tmp_path / f"rank{rank}",
            hostfile,
            on_exit=exits[rank].append,
        )
        for rank in range(2)
    ]
    try:
        for sup in sups:
            await sup.start()
        readies = [await asyncio.wait_for(s.ready, 120) for s in sups]  # type: ignore[arg-type]
        assert [r.layers for r in readies] == [(0, 1), (1, 2)]
        assert (tmp_path / "rank0" / "spec.json").exists()

        root = sups[0]
        asks = [("hello", 12), ("the quick brown fox", 5), ("def main():", 20), ("a", 1)]
        alone = [await _collect(root.generate(_request(tiny_model_id, p, n))) for p, n in asks]
        # Same request id for all four: the supervisor keeps them apart by its own ids.
        together = await asyncio.gather(
            *(
                _collect(root.generate(replace_id(_request(tiny_model_id, p, n), "same")))
                for p, n in asks
            )
        )
        assert together == alone
        for chunks, (_, n) in zip(alone, asks, strict=True):
            assert isinstance(chunks[-1], Finish) and chunks[-1].usage.completion_tokens == n

        # Rank 1's runner dies in the middle of a long stream: the stream ends fast, with 503.
        stream = root.generate(_request(tiny_model_id, "hello", 100_000))
        first = await asyncio.wait_for(stream.__anext__(), 30)
        assert isinstance(first, Token)
        assert sups[1].process is not None
        sups[1].process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        rest = await asyncio.wait_for(_collect(stream), 10)
        assert time.monotonic() - killed_at < 5
        assert isinstance(rest[-1], Error) and rest[-1].code == "shard_failed"
        assert rest[-1].status == 503
        for _ in range(100):  # both supervisors see their runner end, in either order
            if exits[0] and exits[1]:
                break
            await asyncio.sleep(0.05)
        assert exits[1] == ["rank 1's runner was killed by signal SIGKILL"]
        assert exits[0]  # rank 0 lost its ring peer and ended too
        after = await _collect(root.generate(_request(tiny_model_id, "hello", 3)))
        assert len(after) == 1 and isinstance(after[0], Error) and after[0].status == 503
    finally:
        for sup in sups:
            await sup.stop()
    for sup in sups:
        assert sup.process is not None and sup.process.returncode is not None
    assert all(_port_is_free(p) for p in ports)


def replace_id(request: GenerationRequest, request_id: str) -> GenerationRequest:
    from dataclasses import replace

    return replace(request, request_id=request_id)


async def test_a_runner_blocked_in_init_is_stopped_and_leaves_no_port(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    port = free_port()
    hostfile = [[f"127.0.0.1:{port}"], ["127.0.0.1:9"]]  # rank 1 never comes
    exits: list[str] = []
    sup = RunnerSupervisor(
        _spec(tiny_model_path, tiny_model_id, 0, 2, (0, 1)), tmp_path, hostfile,
        on_exit=exits.append,
    )  # fmt: skip
    await sup.start()
    for _ in range(200):  # it binds its port once it is in the ring's init
        if not _port_is_free(port):
            break
        await asyncio.sleep(0.05)
    assert not _port_is_free(port)
    started = time.monotonic()
    await sup.stop("watchdog", grace=0.5)
    assert time.monotonic() - started < 8
    assert sup.process is not None and sup.process.returncode is not None
    assert _port_is_free(port)
    assert len(exits) == 1
    with pytest.raises(RuntimeError):
        sup.ready.result()  # type: ignore[union-attr]


NODE_SCRIPT = """
import asyncio, sys
from pathlib import Path
from salut_tui.shard.spec import RunnerSpec
from salut_tui.shard.supervisor import RunnerSupervisor

async def main():
    spec = RunnerSpec.read(Path(sys.argv[1]))
    sup = RunnerSupervisor(spec, Path(sys.argv[2]), [[sys.argv[3]], ["127.0.0.1:9"]],
                           on_exit=lambda reason: None)
    await sup.start()
    print(sup.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks Linux's /proc")
def test_a_runner_dies_with_its_node(
    tmp_path: Path, tiny_model_path: Path, tiny_model_id: str
) -> None:
    spec_path = tmp_path / "in.json"
    _spec(tiny_model_path, tiny_model_id, 0, 2, (0, 1)).write(spec_path)
    port = free_port()
    node = subprocess.Popen(
        [sys.executable, "-c", NODE_SCRIPT, str(spec_path), str(tmp_path / "w"),
         f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert node.stdout is not None
        runner_pid = int(node.stdout.readline())
        assert _alive(runner_pid)
    finally:
        node.kill()
        node.wait()
    deadline = time.monotonic() + 5
    while _alive(runner_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(runner_pid)
