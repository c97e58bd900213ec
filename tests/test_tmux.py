"""`salut` in a real terminal: tmux at 80x24, keys sent as a person over SSH would type them.

Runs the real command line (`python -m salut_tui ...`) with the tiny model, opens every screen
with its key, checks what tmux shows, quits with q and checks the exit status. A second run
chats (ctrl+s sends, as tmux delivers it), watches a live API stream follow its end, and copies
the API key with `y`: tmux, with `set-clipboard on`, turns the OSC 52 sequence the app writes
into a paste buffer, as an SSH client's terminal turns it into its clipboard.
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
from tests.test_ui_app import long_context_model  # noqa: F401  (a fixture)

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


# Each test runs its own tmux server, so options set here never reach anyone's tmux.
SOCKET = f"salut-test-{os.getpid()}"


def tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", SOCKET, *args], check=True, capture_output=True, text=True
    ).stdout


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


def salut_command(tmp_path: Path, model: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "salut_tui",
        "--config",
        str(tmp_path / "salut.toml"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        "--model",
        str(model),
    ]


def test_salut_in_tmux_opens_every_screen_and_quits(tmp_path: Path, tiny_model_path: Path) -> None:
    config = tmp_path / "salut.toml"
    config.write_text('node_name = "tmux-node"\nmode = "solo"\n')
    exit_file = tmp_path / "exit-status"
    command = salut_command(tmp_path, tiny_model_path, free_port())
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
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)


# A client that streams one long answer (the tiny model with a 16k context, greedy: it never
# stops by itself) and prints a dot per chunk until the test kills it.
STREAM_CLIENT = """
import json, sys, urllib.request
base, key = sys.argv[1], sys.argv[2]
auth = {"Authorization": "Bearer " + key}
models = urllib.request.urlopen(urllib.request.Request(base + "/models", headers=auth))
model = json.load(models)["data"][0]["id"]
body = {"model": model, "stream": True, "max_tokens": 16000, "temperature": 0,
        "messages": [{"role": "user", "content": "tell me everything"}]}
request = urllib.request.Request(base + "/chat/completions", json.dumps(body).encode(),
                                 {**auth, "Content-Type": "application/json"})
for _line in urllib.request.urlopen(request):
    print(".", end="", flush=True)
"""


def test_salut_in_tmux_chats_follows_a_live_stream_and_copies(
    tmp_path: Path,
    long_context_model: Path,  # noqa: F811
) -> None:
    key = "sk-salut-tmux-copy-test"
    (tmp_path / "salut.toml").write_text(
        f'node_name = "tmux-node"\nmode = "solo"\napi_key = "{key}"\n'
    )
    exit_file = tmp_path / "exit-status"
    port = free_port()
    command = salut_command(tmp_path, long_context_model, port)
    shell = f"cd {Path.cwd()} && {' '.join(command)}; echo $? > {exit_file}"
    session = f"salut-test-{os.getpid()}-{tmp_path.name}"
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", shell)
    tmux("set-option", "-s", "set-clipboard", "on")
    client: subprocess.Popen[bytes] | None = None
    try:
        wait_for_pane(session, "Salut · tmux-node · Overview")
        wait_for_pane(session, "8 Logs q Quit")

        # Copy: y on Settings puts the API key on the clipboard (OSC 52 -> a tmux buffer).
        tmux("send-keys", "-t", session, "7")
        wait_for_pane(session, "Default model")
        tmux("send-keys", "-t", session, "y")
        wait_for_pane(session, "Copied the API key")
        assert tmux("show-buffer") == key

        # Chat: type, ctrl+s sends (enter would start a new line); escape stops the answer.
        tmux("send-keys", "-t", session, "4")
        wait_for_pane(session, "ctrl+s sends")
        tmux("send-keys", "-t", session, "-l", "hello there")
        tmux("send-keys", "-t", session, "C-s")
        pane = wait_for_pane(session, " You\n")  # the user's turn, labelled
        assert "hello there" in pane
        wait_for_pane(session, "served by local")
        # The tiny model may finish its answer between two looks at the pane (a quiet machine
        # is fast): stop it while it writes, else it must have finished on its own.
        pane = eventually(
            lambda: next((p for p in [tmux("capture-pane", "-p", "-t", session)]
                          if "is writing" in p or "finish:" in p), ""),
            30, "the answer is written or finished", interval=0.1,
        )  # fmt: skip
        if "is writing" in pane:
            tmux("send-keys", "-t", session, "Escape")
            eventually(  # stopped, unless it finished just before the key arrived
                lambda: any(w in tmux("capture-pane", "-p", "-t", session)
                            for w in ("stopped", "finish:")),
                30, "the answer stops", interval=0.1,
            )  # fmt: skip
        tmux("send-keys", "-t", session, "Escape")  # leave the prompt
        time.sleep(0.5)

        # A live stream from an API client: the detail view follows its end.
        client = subprocess.Popen(
            [sys.executable, "-c", STREAM_CLIENT, f"http://127.0.0.1:{port}/v1", key],
            stdout=subprocess.PIPE,
        )
        tmux("send-keys", "-t", session, "3")
        wait_for_pane(session, "● streaming")
        tmux("send-keys", "-t", session, "Down")  # the API stream is below the chat's
        tmux("send-keys", "-t", session, "Enter")
        first = wait_for_pane(session, "following")
        time.sleep(1.5)
        later = wait_for_pane(session, "following")
        assert later != first  # the text moved on under a view that stays at its end
        assert len(later.splitlines()) <= 24
        tmux("send-keys", "-t", session, "Escape")
        client.kill()
        client.wait()
        wait_for_pane(session, "cancelled")

        tmux("send-keys", "-t", session, "q")  # nothing in flight: quits without asking
        eventually(lambda: exit_file.read_text().strip(), 30, "salut exits after q", interval=0.2)
        assert exit_file.read_text().strip() == "0"
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)
