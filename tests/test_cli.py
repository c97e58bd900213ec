from __future__ import annotations

from pathlib import Path

import mlx_lm
import pytest

from salut_tui.cli import build_parser, main, settings_from_args
from salut_tui.config import Settings
from salut_tui.engine.registry import ModelRegistry
from tests.test_gguf_import import load_weights, write_llama_gguf
from tests.test_hub import hub, repo_files  # noqa: F401  (fixtures: a local stand-in for the hub)


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SALUT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def test_options_before_and_after_the_subcommand() -> None:
    parser = build_parser()
    args = parser.parse_args(["--port", "9001", "serve", "--name", "a", "--model", "x"])
    settings, path = settings_from_args(args)
    assert (settings.port, settings.node_name, path) == (9001, "a", None)
    assert args.model == ["x"]
    args = parser.parse_args(["serve", "--port", "9002", "--data-dir", "/d", "--mode", "solo"])
    settings, _ = settings_from_args(args)
    assert (settings.port, settings.data_dir, settings.mode) == (9002, "/d", "solo")


def test_command_line_wins_over_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "salut.toml"
    conf.write_text('port = 8000\nnode_name = "from-file"\napi_key = "k"\n')
    args = build_parser().parse_args(["serve", "--config", str(conf), "--port", "8001"])
    settings, path = settings_from_args(args)
    assert path == conf
    assert (settings.port, settings.node_name, settings.api_key) == (8001, "from-file", "k")


def test_bad_config_exits_2_naming_file_and_key(tmp_path: Path, capsys) -> None:
    conf = tmp_path / "salut.toml"
    conf.write_text("port = -5\n")
    assert main(["serve", "--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert str(conf) in err and "'port'" in err


def test_import_converts_a_gguf_into_the_models_dir(
    tiny_model_path: Path, tmp_path: Path, capsys
) -> None:
    gguf_file = write_llama_gguf(
        tiny_model_path, tmp_path / "m.gguf", load_weights(tiny_model_path), {}
    )
    data = tmp_path / "data"
    assert main(["import", str(gguf_file), "--id", "acme/tiny", "--data-dir", str(data)]) == 0
    assert "imported acme/tiny" in capsys.readouterr().err
    path = ModelRegistry(Settings(data_dir=str(data))).resolve("acme/tiny")
    assert path == data / "models" / "acme" / "tiny"
    _, tokenizer = mlx_lm.load(str(path))
    assert tokenizer.encode("Hello world") == mlx_lm.load(str(tiny_model_path))[1].encode(
        "Hello world"
    )


def test_import_refuses_bad_input(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    assert main(["import", str(bogus), "--id", "noslash", "--data-dir", str(tmp_path)]) == 2
    assert "ORG/NAME" in capsys.readouterr().err
    assert (
        main(["import", str(tmp_path / "missing.gguf"), "--id", "a/b", "--data-dir", str(tmp_path)])
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    assert main(["import", str(bogus), "--id", "a/b", "--data-dir", str(tmp_path)]) == 2
    assert "salut import:" in capsys.readouterr().err


async def test_download_lands_where_the_registry_finds_it(
    hub,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    monkeypatch,
    capsys,
) -> None:
    """`salut download` against a local stand-in for the hub, then the model resolves by id."""
    import asyncio

    from tests.test_hub import REPO_ID

    _, endpoint = hub
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    code = await asyncio.to_thread(main, ["download", REPO_ID, "--endpoint", endpoint])
    assert code == 0, capsys.readouterr().err
    resolved = ModelRegistry(Settings(data_dir=str(tmp_path / "data"))).resolve(REPO_ID)
    assert resolved.is_relative_to(tmp_path / "hf")
    assert (resolved / "config.json").is_file()
    missing = await asyncio.to_thread(main, ["download", "nobody/nothing", "--endpoint", endpoint])
    assert missing == 2 and "no such model" in capsys.readouterr().err


async def test_download_through_the_running_node_shows_in_its_transfers(
    hub,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    monkeypatch,
    capsys,
) -> None:
    """With a node running for the data dir, `salut download` asks the node (whose Models screen
    lists its transfers) and draws a progress bar with the rate and time left."""
    import asyncio

    from salut_tui.node import Node
    from tests.test_hub import REPO_ID

    _, endpoint = hub
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    data = tmp_path / "data"
    node = Node(Settings(host="127.0.0.1", port=0, data_dir=str(data), node_name="n"))
    await node.start(preload=[])
    try:
        args = ["download", REPO_ID, "--endpoint", endpoint, "--data-dir", str(data)]
        code = await asyncio.to_thread(main, args)
        err = capsys.readouterr().err
        assert code == 0, err
        (view,) = node.transfers.all()
        assert view.kind == "download" and view.state == "done" and view.model == REPO_ID
        assert view.total > 0 and view.done == view.total and view.received == view.total
        assert "100%" in err and "ETA" in err and "/s" in err
        assert node.registry.locate(REPO_ID) is not None
    finally:
        await node.stop()


async def test_a_download_resumed_through_the_node_counts_the_partial_as_on_disk(
    hub,  # noqa: F811  (the fixture imported above)
    repo_files,  # noqa: F811
    tmp_path: Path,
    monkeypatch,
    capsys,
) -> None:
    """Half the weights already in their partial file (a killed download): `salut download`
    fetches the rest only, and the node's transfer says so (done counts the partial, received
    does not), as the Models screen and the progress bar show it."""
    import asyncio

    from salut_tui.node import Node
    from tests.test_hub import REPO_ID, _partial

    fake, endpoint = hub
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    partial = _partial(tmp_path / "hf", repo_files)
    partial.parent.mkdir(parents=True)
    half = len(repo_files["model.safetensors"]) // 2
    partial.write_bytes(repo_files["model.safetensors"][:half])
    data = tmp_path / "data"
    node = Node(Settings(host="127.0.0.1", port=0, data_dir=str(data), node_name="n"))
    await node.start(preload=[])
    try:
        args = ["download", REPO_ID, "--endpoint", endpoint, "--data-dir", str(data)]
        code = await asyncio.to_thread(main, args)
        err = capsys.readouterr().err
        assert code == 0, err
        (view,) = node.transfers.all()
        assert view.state == "done" and view.done == view.total
        assert view.received == view.total - half
        assert fake.ranges == [f"bytes={half}-"]
        assert "100%" in err
    finally:
        await node.stop()
