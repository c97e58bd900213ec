"""`salut pull` between two real `salut serve` processes on the private LAN of test_multinode
(a network namespace each as root, else 127.0.0.x): B holds the tiny model plus a large weight
file; A pulls it over the encrypted link. B is killed mid-copy and restarted; the second pull
goes on from what arrived and sends fewer bytes than the whole; the copy is byte-identical and
A then serves it itself, with B's greedy output. (Refusals: test_model_pull.py, in-process.)"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import eventually
from tests.test_multinode import Lan, NodeProc, _code, chat

MODEL = "salut-test/tiny-llama"
BIG = 192 * 1024 * 1024  # big enough to be caught mid-copy
pytestmark = pytest.mark.timeout(400)


def digests(directory: Path) -> dict[str, str]:
    out = {}
    for path in sorted(directory.iterdir()):
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 22):
                digest.update(block)
        out[path.name] = digest.hexdigest()
    return out


@pytest.fixture(scope="module")
def two(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path
) -> Iterator[tuple[NodeProc, NodeProc]]:
    net = Lan()
    root = tmp_path_factory.mktemp("pull-lan")
    nodes: list[NodeProc] = []
    try:
        for i, name in enumerate(("A", "B")):
            ip, ns = net.add_node(i)
            nodes.append(NodeProc(name, ip, root / name, ns, {}))
        a, b = nodes
        if not net.netns:
            a.peers, b.peers = [b.address], [a.address]
        source = b.data_dir / "models" / MODEL
        shutil.copytree(tiny_model_path, source)
        with (source / "extra.safetensors").open("wb") as fh:  # not read by the loader
            block = hashlib.sha256(b"salut").digest() * (1 << 15)  # 1 MiB, not all zeros
            for i in range(BIG // len(block)):
                fh.write(block[i % 32 :] + block[: i % 32])
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        joined = a.cli("pair", "join", b.address, _code(b.cli("pair", "code")))
        assert joined.returncode == 0, joined.stderr
        yield a, b
    finally:
        for node in nodes:
            node.stop()
        net.remove()


def linked(a: NodeProc, b: NodeProc) -> bool:
    peer = a.peer(b)
    return peer is not None and peer["health"] == "ok" and MODEL in peer["available_models"]


def last_pull(a: NodeProc) -> dict | None:
    _, body = a.control("GET", "/models")
    pulls = [t for t in body["transfers"] if t["kind"] == "pull"]
    return pulls[-1] if pulls else None


def test_pull_survives_the_sender_dying_and_serves_the_same(two: tuple[NodeProc, NodeProc]) -> None:
    a, b = two
    eventually(lambda: linked(a, b), 30, "A sees B's model over a healthy link")
    first = a.cli_background("pull", MODEL, "--from", "B")
    midway = eventually(
        lambda: (t := last_pull(a)) is not None and 0 < t["done"] < t["total"] / 2 and t,
        60, "the copy under way", interval=0.02,
    )  # fmt: skip
    b.kill()
    first.communicate(timeout=60)
    assert first.returncode == 1
    failed = last_pull(a)
    assert failed is not None and failed["state"] == "failed", failed
    assert not (a.data_dir / "models" / MODEL).exists()  # never visible half-copied
    assert midway["done"] > 0

    b.start()
    b.wait_ready()
    eventually(lambda: linked(a, b), 30, "B back and linked")
    second = a.cli("pull", MODEL, "--from", "B")
    assert second.returncode == 0, second.stderr
    done = last_pull(a)
    assert done is not None and done["state"] == "done"
    assert 0 < done["received"] < done["total"], done  # resumed: only what was missing
    copy = a.data_dir / "models" / MODEL
    assert digests(copy) == digests(b.data_dir / "models" / MODEL)

    table = a.cli("models")
    assert table.returncode == 0 and MODEL in table.stdout and "this node" in table.stdout

    mine = chat(a, MODEL, stream=False)
    theirs = chat(b, MODEL, stream=False)
    assert mine == theirs and mine
    health = a.get("/health")
    assert MODEL in json.dumps(health), health  # A loaded and served it itself
