"""`salut` in a real terminal next to a `salut serve` service (the headless Mac reached over SSH):
it finds the running node for the data dir and attaches instead of starting a second node, chats
through it, says that quitting leaves the node running, exits 0, and the node keeps serving."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import eventually, free_port, wait_healthy
from tests.test_tmux import SOCKET, pytestmark, tmux, wait_for_pane

__all__ = ["pytestmark"]


def test_salut_attaches_to_the_running_service_chats_and_leaves_it_running(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    config = tmp_path / "salut.toml"
    config.write_text('# the service\'s own file\nnode_name = "service-node"\nmode = "solo"\n')
    port = free_port()
    common = ["--config", str(config), "--data-dir", str(tmp_path / "data")]
    env = {k: v for k, v in os.environ.items() if k != "SALUT_CONFIG"}
    serve = subprocess.Popen(
        [sys.executable, "-m", "salut_tui", "serve", *common, "--host", "127.0.0.1",
         "--port", str(port), "--model", str(tiny_model_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    exit_file = tmp_path / "exit-status"
    session = f"salut-attach-{os.getpid()}-{tmp_path.name}"
    try:
        wait_healthy(base, serve, models=[str(tiny_model_path)])
        command = " ".join([sys.executable, "-m", "salut_tui", *common])  # no sub-command
        shell = f"cd {Path.cwd()} && {command}; echo $? > {exit_file}"
        tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", shell)
        wait_for_pane(session, "Salut · service-node · Overview")
        tmux("send-keys", "-t", session, "4")
        wait_for_pane(session, "Ask something")
        tmux("send-keys", "-t", session, "-l", "hello there")
        tmux("send-keys", "-t", session, "C-s")
        wait_for_pane(session, "served by local")  # the service's model answers
        tmux("send-keys", "-t", session, "Escape")  # stops the answer if it is still coming
        eventually(
            lambda: any(w in tmux("capture-pane", "-p", "-t", session) for w in ("finish:", "stopped")),
            30, "the answer ends", interval=0.2,
        )  # fmt: skip
        wait_for_pane(session, "0 in flight")
        time.sleep(1.0)  # the stopped answer's worker has ended: escape now leaves the prompt
        tmux("send-keys", "-t", session, "Escape")
        time.sleep(0.5)
        tmux("send-keys", "-t", session, "q")
        eventually(
            lambda: exit_file.read_text().strip(), 30, "salut exits after q", interval=0.2,
            describe=lambda: tmux("capture-pane", "-p", "-t", session),
        )  # fmt: skip
        assert exit_file.read_text().strip() == "0"
        assert serve.poll() is None  # the service still runs, and serves
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            assert response.status == 200
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)
        serve.terminate()
        serve.wait(timeout=20)
