"""`salut models`, `salut load MODEL --on PEER` and `salut unload MODEL --on PEER` against
in-process paired nodes: the list says where each model's files are and where it is loaded, with a
sharded instance's participants, ranks and layers as /v1/models (`shard`) and /v1/cluster list
them; a load on a peer shows the peer's memory check and its progress here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from salut_tui.cli.models import model_lines
from salut_tui.events import MEMORY_CHECK, Event, ModelLoadProgressed
from salut_tui.node import Node
from tests.engine_helpers import make_engine
from tests.helpers import until
from tests.test_keep_alive import pair_ab  # noqa: F401  (fixture: two paired nodes with "tiny")
from tests.test_load_cli import _cli, small_pair  # noqa: F401  (fixture: two nodes too small)


def test_model_lines_show_files_loads_and_shard_parts() -> None:
    rows = [
        {"id": "acme/whole", "here": True, "peers_with_files": ["B"], "loaded": True,
         "nodes": ["A", "B"], "keep_alive_left": None, "shard": []},
        {"id": "acme/split", "here": False, "peers_with_files": ["B", "C"], "loaded": True,
         "nodes": ["B", "C"], "keep_alive_left": None,
         "shard": [{"id": "c1", "name": "C", "rank": 1, "layers": [14, 28]},
                   {"id": "b1", "name": "B", "rank": 0, "layers": [0, 14]}]},
        {"id": "acme/files", "here": False, "peers_with_files": [], "loaded": False,
         "nodes": [], "keep_alive_left": None, "shard": []},
    ]  # fmt: skip
    header, whole, split, rank0, rank1, files = model_lines(rows, "A")
    assert header.split() == ["MODEL", "FILES", "ON", "LOADED", "ON", "IDLE", "UNLOAD"]
    assert whole.split() == ["acme/whole", "this", "node,", "B", "A,", "B", "kept", "loaded"]
    assert split.split() == ["acme/split", "B,", "C", "sharded:", "B,", "C", "-"]
    assert rank0.split() == ["rank", "0", "B", "layers", "0-14"]
    assert rank1.split() == ["rank", "1", "C", "layers", "14-28"]
    assert files.split() == ["acme/files", "-", "-", "-"]


def test_model_lines_show_a_partial_copy_on_a_line_of_its_own() -> None:
    rows = [
        {"id": "acme/split", "here": False, "peers_with_files": ["A"], "loaded": False,
         "nodes": [], "keep_alive_left": None, "shard": []},
        {"id": "acme/other", "here": False, "peers_with_files": ["A"], "loaded": False,
         "nodes": [], "keep_alive_left": None, "shard": []},
    ]  # fmt: skip
    partials = [
        {"model": "acme/split", "weights": ["m-2.safetensors", "m-3.safetensors"],
         "bytes": 3_100_000},
        {"model": "acme/gone", "weights": [f"g-{i}.safetensors" for i in range(5)],
         "bytes": 1000},
    ]  # fmt: skip
    header, split, copy, other, gone, gone_copy = model_lines(rows, "B", partials)
    assert split.split() == ["acme/split", "A", "-", "-"]  # the copy is not whole: not "here"
    assert (
        copy == "  partial copy here for sharding: files m-2.safetensors, m-3.safetensors, 3.1 MB"
    )
    assert other.split() == ["acme/other", "A", "-", "-"]
    assert gone.split() == ["acme/gone", "-", "-", "-"]  # no node lists it: the copy alone
    assert gone_copy.startswith("  partial copy here for sharding: files g-0.safetensors, ")
    assert gone_copy.endswith("g-2.safetensors and 2 more, 1.0 KB"), gone_copy
    assert model_lines(rows, "B") == [header, split, other]


async def test_the_first_load_stage_is_the_memory_check(
    tmp_path: Path, tiny_model_id: str, tiny_model_path: Path
) -> None:
    engine, seen = make_engine(tmp_path, tiny_model_id, tiny_model_path)
    await engine.start()
    try:
        await engine.load(tiny_model_id)
    finally:
        await engine.stop()
    stages = [e.stage for e in seen if isinstance(e, ModelLoadProgressed)]
    assert stages[0].startswith(MEMORY_CHECK) and "needs about" in stages[0], stages
    assert "GiB free" in stages[0] and not any(s.startswith(MEMORY_CHECK) for s in stages[1:])


async def test_load_and_unload_on_a_peer_from_the_cli(
    pair_ab: tuple[Node, Node],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = pair_ab
    assert b.engine is not None and a.engine is not None
    staged: list[Event] = []
    b.events.subscribe(lambda e: staged.append(e) if isinstance(e, ModelLoadProgressed) else None)
    data = ["--data-dir", a.settings.data_dir]
    code, out, err = await _cli(["load", "tiny", "--on", "B", "--keep-alive", "-1", *data], capsys)
    assert code == 0, out + err
    assert (
        "loaded tiny on B" in out and b.engine.is_loaded("tiny") and not a.engine.is_loaded("tiny")
    )
    check = next(e.stage for e in staged if e.stage.startswith(MEMORY_CHECK))
    assert f"B: {check}" in err  # the peer's own figures, on their own line
    assert "loading tiny [" in err and "100%" in err  # the peer's progress, drawn here

    await until(lambda: "B" in next(m for m in a.models() if m.id == "tiny").nodes, 5)
    code, out, err = await _cli(["models", *data], capsys)
    assert code == 0, out + err
    (row,) = [line for line in out.splitlines() if line.startswith("tiny ")]
    assert row.split()[1:] == ["this", "node,", "B", "B", "-"], row  # files on both, loaded on B

    code, out, err = await _cli(["unload", "tiny", "--on", "B", *data], capsys)
    assert code == 0 and "unloaded tiny on B" in out, out + err
    assert not b.engine.is_loaded("tiny")
    code, out, err = await _cli(["unload", "tiny", "--on", "B", *data], capsys)
    assert code == 1 and "not loaded" in err, out + err

    b.settings.memory_headroom_gb = 1e6  # B's own memory check refuses it, in words, here
    code, out, err = await _cli(["load", "tiny", "--on", "B", *data], capsys)
    assert code == 1, out + err
    assert "B: the model 'tiny' needs about" in err and "GiB" in err
    assert "--shard" not in out  # a refusal on a named peer proposes no split
    assert not b.engine.is_loaded("tiny")


async def _get(node: Node, path: str) -> dict:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{node.port}{path}") as response,
    ):
        return await response.json()


async def test_models_lists_a_sharded_instance_as_the_api_does(
    small_pair: tuple[Node, Node],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = small_pair
    code, out, err = await _cli(
        ["load", "tiny", "--shard", "--data-dir", a.settings.data_dir], capsys
    )
    assert code == 0, out + err
    assert b.cluster is not None
    await until(lambda: b.cluster.shard_coordinator("tiny") is not None, 10)  # type: ignore[union-attr]
    try:
        (entry,) = [m for m in (await _get(a, "/v1/models"))["data"] if m["id"] == "tiny"]
        parts = entry["shard"]
        assert [p["rank"] for p in parts] == [0, 1] and [p["node"] for p in parts] == ["A", "B"]
        cluster = await _get(a, "/v1/cluster")
        assert "tiny" in str(cluster)  # the same instance, per node there
        for node in (a, b):  # from the coordinator and from the participant alike
            await until(
                lambda n=node: any(m.id == "tiny" and m.loaded and m.shard for m in n.models()), 10
            )
            code, out, err = await _cli(["models", "--data-dir", node.settings.data_dir], capsys)
            assert code == 0, out + err
            lines = out.splitlines()
            (row,) = [i for i, line in enumerate(lines) if line.startswith("tiny ")]
            assert "sharded: A, B" in lines[row], lines[row]
            for p, line in zip(parts, lines[row + 1 : row + 3], strict=True):
                start, end = p["layers"]
                assert line.split() == [
                    "rank",
                    str(p["rank"]),
                    p["node"],
                    "layers",
                    f"{start}-{end}",
                ]
    finally:
        await asyncio.to_thread(lambda: None)
        code, out, err = await _cli(["unload", "tiny", "--data-dir", a.settings.data_dir], capsys)
        assert code == 0, out + err
