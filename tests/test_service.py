"""`salut service`: the rendered launchd/systemd files, and install/uninstall/status run with the
service manager's commands recorded (neither launchctl nor a user systemd runs in a test)."""

from __future__ import annotations

import argparse
import getpass
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from salut_tui.cli import build_parser, main
from salut_tui.cli.service import cmd_service
from salut_tui.config import Settings
from salut_tui.service.apply import StepFailed, run_plan
from salut_tui.service.plan import Run, WriteFile, plan, platform_of, serve_argv
from salut_tui.service.units import (
    LAUNCHD_LABEL,
    ServiceSpec,
    render_launchd_plist,
    render_systemd_unit,
    systemd_command_line,
)

PYTHON = "/opt/py thon/bin/python3"  # a space: quoting must survive it


class Recorder:
    """Records each command and answers with a scripted status (0 unless told)."""

    def __init__(self, statuses: dict[tuple[str, ...], int] | None = None) -> None:
        self.ran: list[tuple[str, ...]] = []
        self.statuses = statuses or {}

    def __call__(self, argv: tuple[str, ...]) -> tuple[int, str]:
        self.ran.append(argv)
        status = self.statuses.get(argv, 0)
        return status, f"output of {argv[0]} ({status})\n"


def service_args(action: str, *extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["service", action, *extra])


def test_plist_round_trips_through_plistlib(tmp_path: Path) -> None:
    spec = ServiceSpec(serve_argv(PYTHON, tmp_path / "salut.toml"), tmp_path)
    agent = plistlib.loads(render_launchd_plist(spec).encode())
    assert agent["Label"] == LAUNCHD_LABEL
    assert agent["ProgramArguments"] == [
        PYTHON,
        "-m",
        "salut_tui",
        "serve",
        "--config",
        str(tmp_path / "salut.toml"),
    ]
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}  # restart on failure only
    logs = tmp_path / "Library" / "Logs" / "Salut"
    assert agent["StandardErrorPath"] == str(logs / "salut.err.log")
    assert agent["StandardOutPath"] == str(logs / "salut.out.log")
    assert spec.launchd_plist_path == tmp_path / "Library/LaunchAgents/dev.salut.node.plist"


def test_systemd_unit_restarts_on_failure_and_logs_to_the_journal(tmp_path: Path) -> None:
    unit = render_systemd_unit(ServiceSpec(serve_argv(PYTHON, None), tmp_path))
    lines = unit.splitlines()
    assert f'ExecStart="{PYTHON}" -m salut_tui serve' in lines
    assert "Restart=on-failure" in lines
    assert "StandardError=journal" in lines
    assert "WantedBy=default.target" in lines


def test_systemd_quoting() -> None:
    assert systemd_command_line(("/bin/x", "a b", "50%", 'say "hi"', "$HOME")) == (
        '/bin/x "a b" 50%% "say \\"hi\\"" "$$HOME"'
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    config = tmp_path / "my config" / "salut.toml"
    spec = ServiceSpec(serve_argv(sys.executable, config), tmp_path)
    good = tmp_path / "salut.service"
    good.write_text(render_systemd_unit(spec))
    # The system-mode check: the user manager cannot start in a container, and the unit syntax
    # and ExecStart checks are the same.
    done = subprocess.run(
        ["systemd-analyze", "verify", str(good)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "salut.service" not in done.stderr  # no warning about our unit
    # The check can fail: a relative ExecStart and a bad Restart= are refused.
    bad = tmp_path / "bad" / "salut.service"
    bad.parent.mkdir()
    bad.write_text(
        render_systemd_unit(ServiceSpec(serve_argv("python-nowhere", None), tmp_path)).replace(
            "Restart=on-failure", "Restart=sometimes"
        )
    )
    refused = subprocess.run(
        ["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0
    assert "restart specifier" in refused.stderr


def test_systemd_install_writes_the_unit_and_runs_systemctl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Path.home()  # the hermetic fixture's empty HOME
    config = tmp_path / "salut.toml"
    config.write_text('node_name = "mini"\n')
    recorder = Recorder()
    status = cmd_service(
        service_args("install", "--config", str(config)),
        Settings(),
        runner=recorder,
        platform="systemd",
        python=PYTHON,
    )
    assert status == 0
    unit = home / ".config/systemd/user/salut.service"
    assert unit.read_text() == render_systemd_unit(
        ServiceSpec((PYTHON, "-m", "salut_tui", "serve", "--config", str(config)), home)
    )
    assert recorder.ran == [
        ("systemctl", "--user", "daemon-reload"),
        ("systemctl", "--user", "enable", "salut.service"),
        ("systemctl", "--user", "restart", "salut.service"),
        ("loginctl", "enable-linger", getpass.getuser()),
    ]
    assert "journalctl --user -u salut" in capsys.readouterr().out

    recorder.ran.clear()
    assert (
        cmd_service(service_args("uninstall"), Settings(), runner=recorder, platform="systemd") == 0
    )
    assert not unit.exists()
    assert recorder.ran == [
        ("systemctl", "--user", "disable", "--now", "salut.service"),
        ("systemctl", "--user", "daemon-reload"),
    ]


def test_launchd_install_bootstraps_the_agent_in_the_gui_domain() -> None:
    home = Path.home()
    uid = os.getuid()
    target = f"gui/{uid}/{LAUNCHD_LABEL}"
    # An agent not yet loaded: bootout fails, and that is fine.
    recorder = Recorder({("launchctl", "bootout", target): 3})
    assert (
        cmd_service(
            service_args("install"), Settings(), runner=recorder, platform="launchd", python=PYTHON
        )
        == 0
    )
    plist = home / "Library/LaunchAgents/dev.salut.node.plist"
    assert plistlib.loads(plist.read_bytes())["ProgramArguments"] == [
        PYTHON,
        "-m",
        "salut_tui",
        "serve",
    ]  # no config file exists: `salut serve` uses its defaults
    assert (home / "Library/Logs/Salut").is_dir()
    assert recorder.ran == [
        ("launchctl", "bootout", target),
        ("launchctl", "bootstrap", f"gui/{uid}", str(plist)),
        ("launchctl", "enable", target),
    ]
    recorder.ran.clear()
    assert (
        cmd_service(service_args("uninstall"), Settings(), runner=recorder, platform="launchd") == 0
    )
    assert recorder.ran == [("launchctl", "bootout", target)]
    assert not plist.exists()


def test_a_failing_bootstrap_fails_the_install(capsys: pytest.CaptureFixture[str]) -> None:
    uid = os.getuid()
    plist = Path.home() / "Library/LaunchAgents/dev.salut.node.plist"
    recorder = Recorder({("launchctl", "bootstrap", f"gui/{uid}", str(plist)): 5})
    status = cmd_service(
        service_args("install"), Settings(), runner=recorder, platform="launchd", python=PYTHON
    )
    assert status == 1
    assert "launchctl bootstrap" in capsys.readouterr().err
    assert ("launchctl", "enable", f"gui/{uid}/{LAUNCHD_LABEL}") not in recorder.ran


def test_status_reports_the_manager_answer_and_the_logs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stopped = ("systemctl", "--user", "status", "--no-pager", "salut.service")
    recorder = Recorder({stopped: 3})
    status = cmd_service(service_args("status"), Settings(), runner=recorder, platform="systemd")
    assert status == 3
    out = capsys.readouterr().out
    assert "output of systemctl (3)" in out
    assert "journalctl --user -u salut -f" in out


def test_dry_run_prints_the_plan_and_touches_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    # Through the real entry point: the current platform's plan, nothing written or run.
    assert main(["service", "install", "--dry-run"]) == 0
    out = capsys.readouterr().out
    home = Path.home()
    if platform_of() == "systemd":
        assert f"write {home}/.config/systemd/user/salut.service" in out
        assert "systemctl --user enable salut.service" in out
        assert "    Restart=on-failure\n" in out  # the unit itself, indented
    assert not any(home.rglob("*.service")) and not any(home.rglob("*.plist"))


def test_run_plan_stops_at_a_failed_checked_command(tmp_path: Path) -> None:
    steps = (
        Run(("first",), check=False),
        Run(("second",)),
        WriteFile(tmp_path / "never", "x"),
    )
    recorder = Recorder({("first",): 1, ("second",): 2})
    with pytest.raises(StepFailed):
        run_plan(steps, recorder)
    assert recorder.ran == [("first",), ("second",)]
    assert not (tmp_path / "never").exists()


def test_plans_name_the_same_files_the_renderers_describe(tmp_path: Path) -> None:
    spec = ServiceSpec(serve_argv(PYTHON, None), tmp_path)
    written = [
        s for s in plan("install", "launchd", spec, uid=501, user="me") if isinstance(s, WriteFile)
    ]
    assert [w.path for w in written] == [spec.launchd_plist_path]
    written = [
        s for s in plan("install", "systemd", spec, uid=501, user="me") if isinstance(s, WriteFile)
    ]
    assert [w.path for w in written] == [spec.systemd_unit_path]
