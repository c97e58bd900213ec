"""The service files, rendered as text by pure functions (tested without any service manager).

macOS: a per-user launchd agent (`~/Library/LaunchAgents/<label>.plist`), logs in
`~/Library/Logs/Salut/`. Linux: a systemd user unit (`~/.config/systemd/user/salut.service`),
logs in the journal (`journalctl --user -u salut`). Both restart `salut serve` when it fails and
leave it stopped when it exits cleanly (a `salut` that was asked to stop stays stopped).
"""

from __future__ import annotations

import plistlib
from dataclasses import dataclass
from pathlib import Path

LAUNCHD_LABEL = "dev.salut.node"
SYSTEMD_UNIT = "salut.service"
# launchd starts agents with a bare PATH; Homebrew's prefixes let `salut` find the tools a
# user installed there (git for a hub download, a Python's own helpers).
LAUNCHD_PATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
RESTART_DELAY_SECONDS = 5


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """What the service runs: an absolute argv (`python -m salut_tui serve --config ...`)."""

    argv: tuple[str, ...]
    home: Path

    @property
    def launchd_log_dir(self) -> Path:
        return self.home / "Library" / "Logs" / "Salut"

    @property
    def launchd_plist_path(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"

    @property
    def systemd_unit_path(self) -> Path:
        return self.home / ".config" / "systemd" / "user" / SYSTEMD_UNIT


def render_launchd_plist(spec: ServiceSpec) -> str:
    logs = spec.launchd_log_dir
    agent = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": list(spec.argv),
        "WorkingDirectory": str(spec.home),
        "RunAtLoad": True,
        # Restart on failure only: a clean exit (someone stopped it) stays stopped.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": RESTART_DELAY_SECONDS,
        # Inference is latency-bound work: no App Nap or background throttling.
        "ProcessType": "Interactive",
        "StandardOutPath": str(logs / "salut.out.log"),
        "StandardErrorPath": str(logs / "salut.err.log"),
        "EnvironmentVariables": {"PATH": LAUNCHD_PATH, "PYTHONUNBUFFERED": "1"},
    }
    return plistlib.dumps(agent, sort_keys=False).decode("utf-8")


def render_systemd_unit(spec: ServiceSpec) -> str:
    return "\n".join(
        [
            "[Unit]",
            "Description=Salut LLM inference node (salut serve)",
            "Documentation=https://pypi.org/project/salut-tui/",
            "",
            "[Service]",
            "Type=simple",
            f"ExecStart={systemd_command_line(spec.argv)}",
            "Restart=on-failure",
            f"RestartSec={RESTART_DELAY_SECONDS}",
            # salut serve drains in-flight streams on SIGTERM; give it time to.
            "TimeoutStopSec=30",
            "Environment=PYTHONUNBUFFERED=1",
            # stdout/stderr go to the journal: journalctl --user -u salut
            "StandardOutput=journal",
            "StandardError=journal",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
    )


def systemd_command_line(argv: tuple[str, ...]) -> str:
    """argv as systemd's ExecStart reads it: words with spaces or quotes double-quoted,
    backslashes and quotes escaped, `%` doubled (systemd's specifier character)."""
    return " ".join(_systemd_word(arg) for arg in argv)


def _systemd_word(arg: str) -> str:
    arg = arg.replace("%", "%%")
    if arg and not any(c.isspace() or c in "\"'\\;$" for c in arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return f'"{escaped}"'
