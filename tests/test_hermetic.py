"""The suite reads nothing of the machine's user: $HOME, the HF cache and the XDG dirs are empty
folders of the test's own (tests/conftest.py), for this process and the nodes it starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from salut_tui.config import Settings, default_config_path, default_data_dir
from salut_tui.engine.registry import ModelRegistry, hf_cache_dir
from tests.conftest import HERMETIC_DIRS


def test_user_dirs_are_fresh_empty_folders(hermetic_environment: Path) -> None:
    for name in HERMETIC_DIRS:
        path = Path(os.environ[name])
        assert path.is_relative_to(hermetic_environment), name
    assert Path.home() == hermetic_environment / "home"
    assert hf_cache_dir().is_relative_to(hermetic_environment)
    assert default_config_path().is_relative_to(hermetic_environment)
    assert default_data_dir().is_relative_to(hermetic_environment)
    assert not any(hf_cache_dir().iterdir())


def test_no_model_comes_from_the_users_hf_cache(tmp_path: Path) -> None:
    registry = ModelRegistry(Settings(data_dir=str(tmp_path)))
    assert not [e for e in registry.available() if e.source == "hf_cache"]


def test_child_processes_inherit_the_same_folders(hermetic_environment: Path) -> None:
    code = "import os, pathlib; print(pathlib.Path.home(), os.environ['HF_HUB_CACHE'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    home, cache = out.stdout.split()
    assert Path(home) == hermetic_environment / "home"
    assert Path(cache) == hermetic_environment / "hf" / "hub"
