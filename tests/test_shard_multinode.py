"""A sharded model across real `salut serve` processes in network namespaces (see
test_multinode.py for the LAN): A and B paired, C not. `salut load tiny --shard --nodes B` on A
splits the tiny model over A (rank 0, coordinator) and B; A also holds the whole model as
`tiny-ref` in its own engine, the reference for greedy output.

Steps, in file order: load and listing; identical greedy text through A, through B (which
forwards to A) and from the reference, streamed and not, 4 at once; no ring socket outside
127.0.0.1; unload from B; C (unpaired) cannot use it; a participant's runner SIGKILLed
mid-stream; the participant node itself SIGKILLed mid-stream. A model only A has (in 3
weight files) loads split over A and B with `--copy`: B gets only its layers' files first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from openai import OpenAI

from tests.helpers import wait_healthy
from tests.model_factory import build_tiny_model
from tests.test_multinode import PORT, REPO, Lan, NodeProc, chat, eventually

pytestmark = pytest.mark.timeout(300)

SPLIT = "salut-test/tiny-split"  # on A only, for the copy offered to B


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[dict]:
    net = Lan()
    root = tmp_path_factory.mktemp("shardlan")
    nodes: dict[str, NodeProc] = {}
    try:
        specs = [
            ("A", {"tiny": str(tiny_model_path), "tiny-ref": str(tiny_model_path)}, ["tiny-ref"]),
            ("B", {"tiny": str(tiny_model_path)}, []),
            ("C", {}, []),
        ]
        for i, (name, models, _) in enumerate(specs):
            ip, ns = net.add_node(i)
            nodes[name] = NodeProc(name, ip, root / name, ns, models)
        # In A's models dir only: 4 layers in 3 weight files, for the copy offered to B.
        build_tiny_model(nodes["A"].data_dir / "models" / SPLIT, num_layers=4, weight_files=3)
        if not net.netns:
            for node in nodes.values():
                node.peers = [n.address for n in nodes.values() if n is not node]
        for (_, _, preload), node in zip(specs, nodes.values(), strict=True):
            _start(node, preload)
        for (_, _, preload), node in zip(specs, nodes.values(), strict=True):
            wait_healthy(f"http://{node.address}", node.proc, models=preload, timeout=60)
        a, b = nodes["A"], nodes["B"]
        status, code = a.control("POST", "/pair/code", {"ttl": 60})
        assert status == 200, code
        status, joined = b.control(
            "POST", "/pair/join", {"address": a.address, "code": code["code"]}
        )
        assert status == 200, joined
        eventually(lambda: (a.peer(b) or {}).get("health") == "ok", 10, "A links to B")
        eventually(lambda: (b.peer(a) or {}).get("health") == "ok", 10, "B links to A")
        nodes["A"].netns_mode = net.netns  # type: ignore[attr-defined]
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()
        net.remove()


def _start(node: NodeProc, preload: list[str]) -> None:
    """As NodeProc.start, but preloading only `preload` (the shard is loaded by the test)."""
    node.root.mkdir(parents=True, exist_ok=True)
    config = node.root / "salut.toml"
    models = ", ".join(f'"{k}" = "{v}"' for k, v in node.models.items())
    peers = ", ".join(f'"{p}"' for p in node.peers)
    config.write_text(
        f"models = {{ {models} }}\npreload = {json.dumps(preload)}\n"
        f'peers = [{peers}]\ndefault_model = "salut-test/none"\n'
    )
    cmd = [*node._prefix(), sys.executable, "-m", "salut_tui", "serve", "--config", str(config),
           "--host", node.ip, "--port", str(PORT), "--data-dir", str(node.data_dir),
           "--name", node.name]  # fmt: skip
    log = open(node.root / "node.log", "ab")  # noqa: SIM115 - the child owns it
    node.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def _runners(node: NodeProc) -> list[int]:
    """Pids of the runner processes working in this node's data dir."""
    found = subprocess.run(
        ["pgrep", "-f", f"salut_tui.shard.runner {node.data_dir}"], capture_output=True, text=True
    )
    return [int(p) for p in found.stdout.split()]


def _load(a: NodeProc, alias: bool = False) -> None:
    spelling = ["shard", "load", "tiny"] if alias else ["load", "tiny", "--shard"]
    result = a.cli(*spelling, "--nodes", "B")
    assert result.returncode == 0, result.stderr + a.log_tail()
    assert "rank 0  A" in result.stdout and "rank 1  B" in result.stdout
    assert "Loaded tiny sharded over A, B" in result.stdout


def test_load_sharded_and_list_it_once(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    _load(a)
    for node in (a, b):  # B learns it from A's state, within a second or so

        def listed(node: NodeProc = node) -> list[dict]:
            models = [m for m in node.get("/v1/models")["data"] if m["id"] == "tiny"]
            return models if len(models) == 1 and models[0]["loaded"] else []

        (model,) = eventually(listed, 5, f"{node.name} lists tiny once, loaded")  # type: ignore[misc]
        shard = [(p["node"], p["rank"], p["layers"]) for p in model["shard"]]
        assert shard == [("A", 0, [0, 1]), ("B", 1, [1, 2])]
    cluster = a.get("/v1/cluster")
    (mine,) = cluster["node"]["shards"]
    assert (mine["model"], mine["rank"], mine["state"], mine["layers"]) == (
        "tiny",
        0,
        "ready",
        [0, 1],
    )
    (peer,) = [p for p in cluster["peers"] if p["name"] == "B"]
    assert [(s["rank"], s["layers"]) for s in peer["shards"]] == [(1, [1, 2])]
    assert len(_runners(a)) == 1 and len(_runners(b)) == 1


def test_greedy_text_matches_the_whole_model_through_any_node(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    reference = chat(a, "tiny-ref", stream=False, max_tokens=24)
    assert reference
    assert chat(a, "tiny", stream=False, max_tokens=24) == reference
    assert chat(a, "tiny", stream=True, max_tokens=24) == reference
    assert chat(b, "tiny", stream=True, max_tokens=24) == reference  # B forwards to A


def test_four_concurrent_requests_each_match_their_single_answer(lan: dict[str, NodeProc]) -> None:
    a = lan["A"]
    client = OpenAI(base_url=f"http://{a.address}/v1", api_key="unused", max_retries=0)

    def ask(model: str, prompt: str, n: int) -> str:
        reply = client.completions.create(model=model, prompt=prompt, max_tokens=n, temperature=0)
        return reply.choices[0].text

    asks = [("hello", 5), ("the quick brown fox", 17), ("def main():", 30), ("a b c", 11)]
    expected = [ask("tiny-ref", p, n) for p, n in asks]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda pn: ask("tiny", *pn), asks))
    assert got == expected


def _sockets(node: NodeProc, pids: list[int]) -> list[str]:
    prefix = ["ip", "netns", "exec", node.netns] if node.netns else []
    out = subprocess.run([*prefix, "ss", "-tanpH"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if any(f"pid={p}," in line for p in pids)]


def test_no_ring_socket_outside_loopback(lan: dict[str, NodeProc]) -> None:
    for node in (lan["A"], lan["B"]):
        pids = _runners(node)
        lines = _sockets(node, pids)
        assert lines, f"no sockets seen for {node.name}'s runner"  # the ring's two connections
        for line in lines:
            local, peer = line.split()[3:5]
            assert local.startswith("127.0.0.1:") and peer.startswith("127.0.0.1:"), line


def test_unload_from_a_participant_ends_it_everywhere(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    result = b.cli("unload", "tiny")
    assert result.returncode == 0 and "every node" in result.stdout, result.stderr
    eventually(lambda: not _runners(a) and not _runners(b), 10, "runners gone")
    eventually(
        lambda: not [m for m in a.get("/v1/models")["data"] if m["id"] == "tiny" and m["loaded"]],
        5, "tiny no longer loaded",
    )  # fmt: skip


def test_a_participant_without_the_files_gets_only_its_layers_files(
    lan: dict[str, NodeProc],
) -> None:
    a, b = lan["A"], lan["B"]
    assert a.cli("load", SPLIT).returncode == 0  # the reference: whole on A
    reference = chat(a, SPLIT, stream=False, max_tokens=24)
    assert reference and a.cli("unload", SPLIT).returncode == 0
    result = a.cli("load", SPLIT, "--shard", "--nodes", "B", "--copy")
    assert result.returncode == 0, result.stdout + result.stderr + a.log_tail()
    [offer] = [line for line in result.stdout.splitlines() if "--copy would copy only" in line]
    assert f"Loaded {SPLIT} sharded over A, B" in result.stdout
    partial = b.data_dir / "models" / ".partial" / SPLIT.replace("/", "--")
    arrived = {p.name for p in partial.iterdir() if p.name.endswith(".safetensors")}
    assert arrived and "model-00001-of-00003.safetensors" not in arrived  # not A's layers
    assert all(name in offer for name in arrived), (arrived, offer)
    assert not (b.data_dir / "models" / SPLIT).exists()  # never a whole model of B's
    assert chat(a, SPLIT, stream=False, max_tokens=24) == reference
    assert chat(b, SPLIT, stream=True, max_tokens=24) == reference  # B forwards to A
    assert a.cli("unload", SPLIT).returncode == 0
    eventually(lambda: not _runners(a) and not _runners(b), 10, "runners gone")


def test_an_unpaired_node_cannot_use_it(lan: dict[str, NodeProc]) -> None:
    a, c = lan["A"], lan["C"]
    _load(a, alias=True)  # `salut shard load` still works
    assert "tiny" not in {m["id"] for m in c.get("/v1/models")["data"]}
    client = OpenAI(base_url=f"http://{c.address}/v1", api_key="unused", max_retries=0)
    with pytest.raises(Exception) as refused:
        client.completions.create(model="tiny", prompt="x", max_tokens=3)
    assert getattr(refused.value, "status_code", None) == 404


def _stream_until_killed(a: NodeProc, kill) -> tuple[str, float, float]:  # type: ignore[no-untyped-def]
    """Stream a long answer from A and call `kill` after a few chunks: (the error the stream
    ended with, seconds from the kill to the end, when the kill happened)."""
    client = OpenAI(base_url=f"http://{a.address}/v1", api_key="unused", max_retries=0)
    stream = client.completions.create(
        model="tiny", prompt="hello", max_tokens=100_000, temperature=0, stream=True
    )
    killed_at = 0.0
    error = ""
    try:
        for n, _chunk in enumerate(stream):
            if n == 3:
                kill()
                killed_at = time.monotonic()
    except Exception as exc:  # the SSE error event surfaces as an APIError
        error = str(exc)
    return error, time.monotonic() - killed_at, killed_at


def _replanned_whole_on_a(a: NodeProc) -> None:
    """A re-plans without the failed participant: the tiny model fits on A alone, so A loads
    it whole and serves the next request (the same greedy text as the reference)."""
    eventually(lambda: "tiny" in a.get("/v1/cluster")["node"]["loaded_models"], 30, "re-plan")
    assert chat(a, "tiny", stream=True, max_tokens=24) == chat(
        a, "tiny-ref", stream=False, max_tokens=24
    )


def test_a_participant_runner_killed_mid_stream(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    (victim,) = _runners(b)
    error, took, killed_at = _stream_until_killed(a, lambda: os.kill(victim, signal.SIGKILL))
    assert killed_at and took < 5, took
    assert "shard" in error or "failed" in error, error
    eventually(lambda: not _runners(a) and not _runners(b), 10, "every runner stopped")
    _replanned_whole_on_a(a)


def test_the_participant_node_killed_mid_stream(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    assert a.cli("unload", "tiny").returncode == 0  # the whole copy from the re-plan
    _load(a)
    (b_runner,) = _runners(b)
    error, took, killed_at = _stream_until_killed(a, b.kill)
    assert killed_at and took < 5, took
    assert error, "the stream must end with an error event"
    eventually(lambda: not _runners(a), 10, "A's runner stopped")
    eventually(lambda: not os.path.exists(f"/proc/{b_runner}"), 5, "B's runner died with B")
    _replanned_whole_on_a(a)


def test_the_coordinator_killed_participants_tear_down(lan: dict[str, NodeProc]) -> None:
    a, b = lan["A"], lan["B"]
    _start(b, [])  # B comes back (same data dir: still paired)
    wait_healthy(f"http://{b.address}", b.proc, timeout=60)
    eventually(lambda: (a.peer(b) or {}).get("health") == "ok", 15, "A links to B again")
    assert a.cli("unload", "tiny").returncode == 0  # the whole copy from the last re-plan
    _load(a)
    (b_runner,) = _runners(b)
    a.kill()
    killed = time.monotonic()
    eventually(lambda: not os.path.exists(f"/proc/{b_runner}"), 10, "B stopped its runner")
    assert time.monotonic() - killed < 5
    eventually(lambda: not b.get("/v1/cluster")["node"]["shards"], 5, "B reports no shard")
