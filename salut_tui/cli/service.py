"""`salut service install|uninstall|status [--dry-run]`: `salut serve` as a per-user service
(a launchd agent on macOS, a systemd user unit on Linux; see `salut_tui.service`)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from salut_tui.config import Settings, find_config
from salut_tui.service.apply import Runner, StepFailed, run_plan, subprocess_runner
from salut_tui.service.plan import (
    Action,
    Platform,
    UnsupportedPlatform,
    WriteFile,
    describe,
    log_hint,
    plan,
    platform_of,
    serve_argv,
)
from salut_tui.service.units import ServiceSpec


def add_service_subcommands(subparsers: argparse._SubParsersAction) -> None:
    service = subparsers.add_parser(
        "service", help="run `salut serve` as a per-user service (launchd or systemd)"
    )
    actions = service.add_subparsers(
        dest="service_command", metavar="{install,uninstall,status}", required=True
    )
    for name, text in (
        ("install", "write the service file, start it now and at every login/boot"),
        ("uninstall", "stop the service and remove its file"),
        ("status", "is it running? (and where its logs are)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument(
            "--config",
            metavar="FILE",
            help="salut.toml the service runs with (else $SALUT_CONFIG, else the default one)",
        )
        action.add_argument(
            "--dry-run", action="store_true", help="print what would be written and run, do nothing"
        )
        action.set_defaults(func=cmd_service)


def cmd_service(
    args: argparse.Namespace,
    _settings: Settings,
    *,
    runner: Runner = subprocess_runner,
    platform: Platform | None = None,
    python: str = sys.executable,
) -> int:
    action: Action = args.service_command
    try:
        where = platform or platform_of()
    except UnsupportedPlatform as exc:
        print(f"salut service: {exc}", file=sys.stderr)
        return 2
    spec = ServiceSpec(serve_argv(python, _config_for_service(args.config)), Path.home())
    steps = plan(action, where, spec, uid=os.getuid(), user=getpass.getuser())
    if args.dry_run:
        for step in steps:
            print(describe(step))
            if isinstance(step, WriteFile):  # the file itself, indented under its line
                print("".join(f"    {line}\n" for line in step.text.splitlines()), end="")
        return 0
    try:
        ran = run_plan(steps, runner)
    except StepFailed as exc:
        print(f"salut service {action}: {exc}", file=sys.stderr)
        return 1
    if action == "status":
        for result in ran:
            print(result.output.rstrip())
        print(log_hint(where, spec))
        return 0 if all(r.status == 0 for r in ran) else 3  # 3: not running (as systemctl)
    if action == "install":
        print(f"salut service installed: {' '.join(spec.argv)}")
        print(log_hint(where, spec))
    else:
        print("salut service uninstalled")
    return 0


def _config_for_service(explicit: str | None) -> Path | None:
    """The config file the service must read, by absolute path (a service has another working
    directory and environment); None: none exists yet, and `salut serve` uses its defaults."""
    found = find_config(explicit)  # a --config that does not exist: ConfigError, exit 2
    return found.resolve() if found is not None else None
