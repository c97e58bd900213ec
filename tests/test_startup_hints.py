"""Start-up hints: a node with no model says what to install or pass, an API open to the network
without a key says so, and `salut serve --model X` that cannot load X exits non-zero."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from salut_tui.config import Settings
from salut_tui.node import Node
from salut_tui.startup import (
    NO_MODEL_HINT,
    log_start_hints,
    no_model_hint,
    open_api_warning,
    require_models,
)
from tests.helpers import free_port


def test_no_model_hint_only_when_nothing_can_be_served() -> None:
    assert no_model_hint(True, [], []) == NO_MODEL_HINT
    assert no_model_hint(True, ["org/m"], []) is None
    assert no_model_hint(True, [], ["an entry"]) is None
    assert no_model_hint(False, [], []) is None  # client-only: serves through its peers
    for words in ("--model", "salut download", "salut import", "pip install"):
        assert words in NO_MODEL_HINT


@pytest.mark.parametrize(
    ("host", "key", "warned"),
    [
        ("0.0.0.0", "", True),
        ("::", "", True),
        ("192.168.1.20", "", True),
        ("0.0.0.0", "secret", False),
        ("127.0.0.1", "", False),
        ("::1", "", False),
        ("localhost", "", False),
    ],
)
def test_open_api_warning(host: str, key: str, warned: bool) -> None:
    warning = open_api_warning(Settings(host=host, api_key=key))
    assert (warning is not None) == warned
    if warning:
        assert host in warning and "API key" in warning and "--api-key" in warning


def test_start_hints_are_logged(caplog, tmp_path: Path) -> None:
    settings = Settings(host="0.0.0.0", data_dir=str(tmp_path))

    class Empty:
        def available(self) -> list:
            return []

    with caplog.at_level(logging.WARNING, logger="salut_tui.startup"):
        log_start_hints(settings, True, [], Empty())
    messages = [r.getMessage() for r in caplog.records]
    assert any("without an API key" in m for m in messages)
    assert NO_MODEL_HINT in messages


async def test_a_node_without_models_says_what_to_do(
    caplog, tmp_path: Path, without_bundled_model
) -> None:
    settings = Settings(host="127.0.0.1", port=0, data_dir=str(tmp_path / "data"), mode="solo")
    node = Node(settings)
    with caplog.at_level(logging.INFO):
        await node.start(preload=[])
        await node.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert NO_MODEL_HINT in messages
    assert not any("without an API key" in m for m in messages)  # loopback only


async def test_require_models_names_what_failed(tmp_path, tiny_model_path, tiny_model_id) -> None:
    from tests.test_openai_client import live_node

    node = await live_node(tmp_path, tiny_model_path, tiny_model_id)
    try:
        assert await require_models(node.load_model, [tiny_model_id], [tiny_model_id]) is None
        failure = await require_models(node.load_model, ["/typo/path"], ["/typo/path"])
        assert failure is not None
        assert "/typo/path" in failure and "does not exist" in failure
        failure = await require_models(node.load_model, ["org/none"], ["org/none"])
        assert failure is not None and "org/none" in failure
    finally:
        await node.stop()


def test_serve_with_a_model_that_cannot_load_exits_non_zero(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "salut_tui", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(free_port()), "--data-dir", str(tmp_path / "data"), "--mode", "solo"]
    cmd += ["--model", "/typo/path"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "cannot load --model /typo/path" in done.stderr
    assert "Traceback" not in done.stderr
