"""Layering that holds: the core (everything outside `salut_tui.ui`) never pulls in Textual or
the UI, and the import contracts in pyproject.toml (`lint-imports`) are kept.

Two complementary checks: each core module imported alone in a fresh interpreter (what really
gets loaded, third-party chains included), and import-linter, which reads every import statement
(lazy and TYPE_CHECKING ones too, which the first check cannot see).
"""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import salut_tui

REPO = Path(__file__).resolve().parent.parent
UI_PACKAGE = "salut_tui.ui"
# `python -m salut_tui` runs the CLI on import: it is the entry point, not a library module.
NOT_IMPORTABLE = {"salut_tui.__main__"}


def core_modules() -> list[str]:
    """Every module of the package outside the UI, found by walking it (no hand-kept list)."""
    found = ["salut_tui"]
    for info in pkgutil.walk_packages(salut_tui.__path__, "salut_tui."):
        if info.name == UI_PACKAGE or info.name.startswith(UI_PACKAGE + "."):
            continue
        if info.name not in NOT_IMPORTABLE:
            found.append(info.name)
    return sorted(found)


CORE_MODULES = core_modules()

PROBE = """
import importlib, sys
importlib.import_module(sys.argv[1])
bad = sorted(
    m for m in sys.modules
    if m in ("textual", "salut_tui.ui") or m.startswith(("textual.", "salut_tui.ui."))
)
print("pulled in: " + " ".join(bad) if bad else "clean")
"""


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_pulls_in_neither_textual_nor_the_ui(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "clean", f"{module}: {out.stdout.strip()}"


def test_the_walk_finds_the_core_and_nothing_of_the_ui() -> None:
    # Guards against the walk silently finding nothing (and the test above proving nothing).
    for part in ("engine", "api", "cluster", "pairing"):
        assert any(m.startswith(f"salut_tui.{part}.") for m in CORE_MODULES), part
    assert "salut_tui.node" in CORE_MODULES and "salut_tui.cli" in CORE_MODULES
    assert not any(m.startswith(UI_PACKAGE) for m in CORE_MODULES)


def test_the_probe_sees_a_module_that_pulls_in_the_ui() -> None:
    # The same probe on a UI module must say so, or a pass above would mean nothing.
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "salut_tui.ui.widgets.sampling"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "salut_tui.ui" in out.stdout and "textual" in out.stdout, out.stdout + out.stderr


def test_import_contracts_are_kept() -> None:
    """pyproject.toml's [tool.importlinter] contracts: core never imports the UI, Textual or the
    CLI; cluster and API never import the node; no cycle among the top-level parts."""
    # The script beside this interpreter first: a PATH shim (pyenv) may depend on $HOME, which
    # the suite points elsewhere.
    beside = Path(sys.executable).parent / "lint-imports"
    lint_imports = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert lint_imports, "lint-imports is not installed (pip install -e '.[test]')"
    out = subprocess.run(
        [lint_imports, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_the_core_contract_names_every_top_level_core_part() -> None:
    """The forbidden contract lists its sources by hand (import-linter cannot say "all but"):
    a new top-level module must be added there, or it would escape the indirect check."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["id"] == "core-without-ui")
    top_level = {
        f"salut_tui.{info.name}"
        for info in pkgutil.iter_modules(salut_tui.__path__)
        if info.name not in ("ui", "cli", "__main__")
    }
    assert set(contract["source_modules"]) == top_level
