"""`salut` in a real terminal: tmux at 80x24, keys sent as a person over SSH would type them.

Runs the real command line (`python -m salut_tui ...`) with the tiny model, opens every screen
with its key, checks what tmux shows, quits with q and checks the exit status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import eventually, free_port

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

# key, the title-bar name, a text the screen shows once drawn
SCREENS = [
    ("1", "Overview", "This node"),
    ("2", "Models", "100% loaded"),
    ("3", "Streams", "No requests yet"),
    ("4", "Chat", "Ask something"),
    ("5", "Peers", "No peers"),
    ("6", "Pairing", "Pairing lets two Salut nodes"),
    ("7", "Settings", "Default model"),
    ("8", "Logs", "serving the API"),
]


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def wait_for_pane(session: str, text: str, timeout: float = 30.0) -> str:
    def pane() -> str:
        return tmux("capture-pane", "-p", "-t", session)

    def shown() -> str:
        captured = pane()
        return captured if text in captured else ""

    return eventually(
        shown,
        timeout,
        f"{text!r} appears",
        interval=0.2,
        ignore=(),
        describe=lambda: f"the pane shows:\n{pane()}",
    )


def test_salut_in_tmux_opens_every_screen_and_quits(tmp_path: Path, tiny_model_path: Path) -> None:
    config = tmp_path / "salut.toml"
    config.write_text('node_name = "tmux-node"\nmode = "solo"\n')
    exit_file = tmp_path / "exit-status"
    command = [
        sys.executable,
        "-m",
        "salut_tui",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "--data-dir",
        str(tmp_path / "data"),
        "--model",
        str(tiny_model_path),
    ]
    shell = f"cd {Path.cwd()} && {' '.join(command)}; echo $? > {exit_file}"
    session = f"salut-test-{os.getpid()}-{tmp_path.name}"  # unique across parallel runs
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", shell)
    try:
        wait_for_pane(session, "Salut · tmux-node · Overview")
        pane = wait_for_pane(session, "8 Logs q Quit")
        assert "1 Overview 2 Models 3 Streams 4 Chat" in pane
        for key, title, text in SCREENS:
            tmux("send-keys", "-t", session, key)
            pane = wait_for_pane(session, text)
            assert pane.splitlines()[0].startswith(f" Salut · tmux-node · {title}")
            assert len(pane.splitlines()) <= 24
            if title == "Chat":
                tmux("send-keys", "-t", session, "Escape")  # leave the prompt
                time.sleep(0.5)
        tmux("send-keys", "-t", session, "q")
        eventually(lambda: exit_file.read_text().strip(), 30, "salut exits after q", interval=0.2)
        assert exit_file.read_text().strip() == "0"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
