"""Copying a model from a peer, in one process with two real nodes over a real peer link: the
copy is byte-identical and serves the same greedy output; a resumed copy sends only what is
missing; a damaged piece is caught by the SHA-256 check; an unpaired peer and a path outside the
model directory are refused. (The copy between separate processes, with the sender killed
mid-copy, is in test_multinode_pull.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from salut_tui.cluster.link import RemoteError
from salut_tui.cluster.model_service import MODEL_MANIFEST, MODEL_READ
from salut_tui.cluster.pull import INCOMING, LOG_FILE, PullProgress, pull_model
from salut_tui.cluster.pull_copier import InOrderHash
from salut_tui.config import Settings
from salut_tui.engine.types import Finish, GenerationRequest, SamplingParams, Token
from salut_tui.node import Node
from salut_tui.transfer.manifest import TransferError
from tests.helpers import until
from tests.test_cluster_node import pair

MODEL = "salut-test/tiny-llama"
PIECE = 64 * 1024


def make(tmp: Path, name: str) -> Node:
    return Node(
        Settings(
            host="127.0.0.1", port=0, data_dir=str(tmp / name), node_name=name,
            default_model="salut-test/none",
        )
    )  # fmt: skip


def digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


@pytest.fixture
async def nodes(tmp_path: Path, tiny_model_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a, b = make(tmp_path, "A"), make(tmp_path, "B")
    shutil.copytree(tiny_model_path, b.settings.models_path() / MODEL)
    # A weight file of several pieces, so that pieces travel in parallel and resume has pieces.
    (b.settings.models_path() / MODEL / "extra.safetensors").write_bytes(bytes(range(256)) * 9000)
    await a.start()
    await b.start()
    await pair(a, b)
    yield a, b
    await a.stop()
    await b.stop()


def link_to_b(a: Node, b: Node):  # type: ignore[no-untyped-def]
    assert a.cluster is not None and b.cluster is not None
    return a.cluster.linked_peer(b.cluster.node_id)


async def greedy(node: Node, model: str) -> list:
    request = GenerationRequest(
        model=model, prompt="hello", sampling=SamplingParams(temperature=0, max_tokens=10)
    )
    return [c async for c in node.generate(request)]


async def test_a_pulls_the_model_and_serves_it_the_same(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    source = b.settings.models_path() / MODEL
    await until(lambda: a.cluster.holder_of(MODEL) is not None, 60)  # type: ignore[union-attr]
    transfer_id = a.pull_model(MODEL)  # no --from: the peer that has it
    await until(lambda: a.transfers.get(transfer_id).state != "running", 120)  # type: ignore[union-attr]
    view = a.transfers.get(transfer_id)
    assert view is not None and view.state == "done", view
    copy = a.settings.models_path() / MODEL
    assert digests(copy) == digests(source)
    assert view.received == view.total == sum(p.stat().st_size for p in source.iterdir())
    assert not any((a.settings.models_path() / INCOMING).iterdir())  # staging is gone
    # Served here now, with the same greedy tokens as the sender gives.
    here, there = await greedy(a, MODEL), await greedy(b, MODEL)
    assert a.engine is not None and a.engine.is_loaded(MODEL)
    assert (
        here == there and isinstance(here[-1], Finish) and any(isinstance(c, Token) for c in here)
    )


async def test_an_interrupted_copy_resumes_with_what_it_has(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    root = a.settings.models_path()
    # A first attempt cancelled (as a node stopping cancels it) once a few pieces are in.
    log = root / INCOMING / "salut-test--tiny-llama" / LOG_FILE
    first = asyncio.ensure_future(
        pull_model(lambda: link_to_b(a, b), MODEL, root, in_flight=1, piece_size=PIECE)
    )
    await until(lambda: log.exists() and log.read_text().count("\n") >= 2, 10, interval=0.001)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert not (root / MODEL).exists()  # a partial copy is never visible
    final: list[PullProgress] = []
    path = await pull_model(lambda: link_to_b(a, b), MODEL, root, final.append, piece_size=PIECE)
    total = final[-1].total
    assert 0 < final[-1].received < total, "the resumed copy should send only what was missing"
    assert digests(path) == digests(b.settings.models_path() / MODEL)


async def test_a_damaged_piece_fails_the_sha_check(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    link = link_to_b(a, b)
    root = a.settings.models_path()
    staging = root / INCOMING / "salut-test--tiny-llama"
    # Pretend an earlier attempt got every piece of extra.safetensors, but with wrong bytes.
    manifest = await link.request(MODEL_MANIFEST, {"model": MODEL})
    staging.mkdir(parents=True)
    (staging / ".salut-manifest.json").write_text(json.dumps(manifest))
    size = next(f["size"] for f in manifest["files"] if f["name"] == "extra.safetensors")
    (staging / "extra.safetensors.part").write_bytes(b"\1" * size)
    pieces = -(-size // (256 * 1024))
    (staging / LOG_FILE).write_text("".join(f"{i} extra.safetensors\n" for i in range(pieces)))
    with pytest.raises(TransferError, match="SHA-256"):
        await pull_model(lambda: link_to_b(a, b), MODEL, root, piece_size=256 * 1024)
    assert not (root / MODEL).exists()
    assert not (staging / "extra.safetensors.part").exists()  # thrown away, fetched next time
    path = await pull_model(lambda: link_to_b(a, b), MODEL, root, piece_size=256 * 1024)
    assert digests(path) == digests(b.settings.models_path() / MODEL)


async def test_reads_outside_the_model_directory_are_refused(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    link = link_to_b(a, b)
    secret = b.settings.data_path() / "identity.key"
    for name in ("../../../data/identity.key", str(secret), "..", ".hidden.json", "run.py"):
        with pytest.raises(RemoteError, match=r"refused file name|not a file"):
            await link.request(
                MODEL_READ, {"model": MODEL, "name": name, "offset": 0, "length": 10}
            )
    with pytest.raises(RemoteError, match="fewer than asked"):
        await link.request(
            MODEL_READ, {"model": MODEL, "name": "config.json", "offset": 0, "length": 10**9}
        )
    with pytest.raises(RemoteError, match="not on this node"):
        await link.request(MODEL_MANIFEST, {"model": "../../etc"})


async def test_a_pull_from_an_unpaired_node_is_refused(
    tmp_path: Path, nodes: tuple[Node, Node]
) -> None:
    a, b = nodes
    assert a.cluster is not None and b.cluster is not None
    await b.cluster.unpair(a.cluster.node_id)
    await until(lambda: b.cluster.node_id not in a.cluster.trust)  # type: ignore[union-attr]
    transfer_id = a.pull_model(MODEL, b.cluster.node_id)
    await until(lambda: a.transfers.get(transfer_id).state != "running")  # type: ignore[union-attr]
    view = a.transfers.get(transfer_id)
    assert view is not None and view.state == "failed" and "not a paired peer" in view.message
    assert not (a.settings.models_path() / MODEL).exists()


async def test_pieces_hashed_in_file_order_whatever_order_they_arrive() -> None:
    data = bytes(range(256)) * 200
    hasher = InOrderHash()
    for offset in (20000, 0, 10000):
        hasher.add(offset, [data[offset : offset + 5000], data[offset + 5000 : offset + 10000]])
        if offset == 20000:
            await asyncio.sleep(0.01)
            assert hasher.upto == 0  # waits for the bytes before it
    assert await hasher.hexdigest() == hashlib.sha256(data[:30000]).hexdigest()
    assert hasher.upto == 30000


async def test_a_copy_goes_on_over_the_new_link_when_its_link_is_replaced(
    nodes: tuple[Node, Node],
) -> None:
    """The link a copy began on is replaced mid-copy (the node with the smaller id dials again,
    as with crossed links): the replaced link drains and refuses new pieces, and the copy takes
    the remaining pieces over the new link instead of failing."""
    a, b = nodes
    assert a.cluster is not None and b.cluster is not None
    root = a.settings.models_path()
    old = link_to_b(a, b)
    log = root / INCOMING / "salut-test--tiny-llama" / LOG_FILE
    final: list[PullProgress] = []
    copy = asyncio.ensure_future(
        pull_model(
            lambda: link_to_b(a, b), MODEL, root, final.append, in_flight=1, piece_size=PIECE
        )
    )
    await until(lambda: log.exists() and log.read_text().count("\n") >= 2, 10, interval=0.001)
    smaller, other = sorted((a.cluster, b.cluster), key=lambda c: c.node_id)
    peer = smaller.trust.get(other.node_id)
    assert peer is not None
    smaller._tasks.spawn(smaller.linker.dial(peer), name="a second link")
    await until(lambda: link_to_b(a, b) is not old, 10, what="the new link on A")
    path = await copy
    assert old.draining or old.closed
    assert digests(path) == digests(b.settings.models_path() / MODEL)
    total = final[-1].total
    assert final[-1].received <= total  # a piece fetched again does not count twice
