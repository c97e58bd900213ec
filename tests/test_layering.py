"""The core never imports Textual: each core module is imported alone in a fresh interpreter."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import salut_tui

CORE_PACKAGES = ("engine", "api", "cluster", "pairing")
CORE_MODULES = ["salut_tui.config", "salut_tui.events", "salut_tui.node", "salut_tui.cli"]
for info in pkgutil.walk_packages(salut_tui.__path__, "salut_tui."):
    if info.name.split(".")[1] in CORE_PACKAGES:
        CORE_MODULES.append(info.name)


@pytest.mark.parametrize("module", sorted(set(CORE_MODULES)))
def test_core_module_does_not_import_textual(module: str) -> None:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print('textual' if bad else 'clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("clean"), f"{module} pulls in Textual"


def test_core_list_is_not_empty() -> None:
    # Guards against the walk above silently finding nothing (and the test proving nothing).
    assert any(m.startswith("salut_tui.engine.") for m in CORE_MODULES)
    assert any(m.startswith("salut_tui.api.") for m in CORE_MODULES)
