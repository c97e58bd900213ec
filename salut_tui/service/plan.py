"""What `salut service install|uninstall|status` does, as a plan of steps (pure, testable).

A plan is a tuple of steps: make a directory, write a file, remove a file, run a command. The
same plan is printed by `--dry-run` and carried out by `apply.run_plan`, so what a test checks
is exactly what would happen on a real machine.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from salut_tui.service.units import (
    LAUNCHD_LABEL,
    SYSTEMD_UNIT,
    ServiceSpec,
    render_launchd_plist,
    render_systemd_unit,
)

Platform = Literal["launchd", "systemd"]
Action = Literal["install", "uninstall", "status"]


class UnsupportedPlatform(Exception):
    """Neither macOS nor Linux: there is no per-user service manager Salut knows."""


@dataclass(frozen=True, slots=True)
class MakeDir:
    path: Path


@dataclass(frozen=True, slots=True)
class WriteFile:
    path: Path
    text: str


@dataclass(frozen=True, slots=True)
class RemoveFile:
    path: Path


@dataclass(frozen=True, slots=True)
class Run:
    argv: tuple[str, ...]
    # False: a failure is expected in some states (unloading what is not loaded) and is not
    # an error of the whole plan.
    check: bool = True


Step = MakeDir | WriteFile | RemoveFile | Run


def platform_of(sys_platform: str = sys.platform) -> Platform:
    if sys_platform == "darwin":
        return "launchd"
    if sys_platform.startswith("linux"):
        return "systemd"
    raise UnsupportedPlatform(
        f"salut service knows launchd (macOS) and systemd (Linux), not {sys_platform!r}"
    )


def serve_argv(python: str, config: Path | None) -> tuple[str, ...]:
    """`python -m salut_tui serve`: the interpreter salut is installed in, by absolute path,
    so the service works from a virtual environment and without PATH."""
    argv = (python, "-m", "salut_tui", "serve")
    return (*argv, "--config", str(config)) if config is not None else argv


def launchd_domain(uid: int) -> str:
    # gui/UID: the agent runs in the user's login session (Metal and the keychain are there).
    return f"gui/{uid}"


def plan(
    action: Action, platform: Platform, spec: ServiceSpec, *, uid: int, user: str
) -> tuple[Step, ...]:
    if platform == "launchd":
        return _launchd(action, spec, uid)
    return _systemd(action, spec, user)


def _launchd(action: Action, spec: ServiceSpec, uid: int) -> tuple[Step, ...]:
    domain = launchd_domain(uid)
    target = f"{domain}/{LAUNCHD_LABEL}"
    plist = spec.launchd_plist_path
    if action == "install":
        return (
            MakeDir(plist.parent),
            MakeDir(spec.launchd_log_dir),  # launchd creates the log files, not their folder
            # A reinstall replaces the running agent: unload the old one first (may be absent).
            Run(("launchctl", "bootout", target), check=False),
            WriteFile(plist, render_launchd_plist(spec)),
            Run(("launchctl", "bootstrap", domain, str(plist))),
            Run(("launchctl", "enable", target)),
        )
    if action == "uninstall":
        return (
            Run(("launchctl", "bootout", target), check=False),
            RemoveFile(plist),
        )
    return (Run(("launchctl", "print", target), check=False),)


def _systemd(action: Action, spec: ServiceSpec, user: str) -> tuple[Step, ...]:
    unit = spec.systemd_unit_path
    systemctl = ("systemctl", "--user")
    if action == "install":
        return (
            MakeDir(unit.parent),
            WriteFile(unit, render_systemd_unit(spec)),
            Run((*systemctl, "daemon-reload")),
            Run((*systemctl, "enable", SYSTEMD_UNIT)),
            # restart, not start (`enable --now`): a reinstall must run the new unit too.
            Run((*systemctl, "restart", SYSTEMD_UNIT)),
            # Lingering starts the user's manager at boot, so the node runs with nobody logged
            # in (a headless box after a power cut). May need polkit rights: not fatal.
            Run(("loginctl", "enable-linger", user), check=False),
        )
    if action == "uninstall":
        return (
            Run((*systemctl, "disable", "--now", SYSTEMD_UNIT), check=False),
            RemoveFile(unit),
            Run((*systemctl, "daemon-reload")),
        )
    return (Run((*systemctl, "status", "--no-pager", SYSTEMD_UNIT), check=False),)


def log_hint(platform: Platform, spec: ServiceSpec) -> str:
    """Where the logs are, for the end of `install` and `status`."""
    if platform == "launchd":
        return f"logs: tail -f {spec.launchd_log_dir}/salut.err.log"
    return f"logs: journalctl --user -u {SYSTEMD_UNIT.removesuffix('.service')} -f"


def describe(step: Step) -> str:
    """One line per step, as `--dry-run` prints it."""
    match step:
        case MakeDir(path=path):
            return f"mkdir -p {path}"
        case WriteFile(path=path, text=text):
            return f"write {path} ({len(text.encode())} bytes)"
        case RemoveFile(path=path):
            return f"rm -f {path}"
        case Run(argv=argv, check=check):
            line = " ".join(argv)
            return line if check else f"{line}  (failure tolerated)"
