"""Carry a plan out: files through pathlib, commands through an injected runner.

The runner is `subprocess.run` on a real machine; tests pass a recorder, because neither
`launchctl` nor a user systemd manager exists where the tests run.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from salut_tui.service.plan import MakeDir, RemoveFile, Run, Step, WriteFile

# Runs argv, returns (exit status, combined output).
Runner = Callable[[tuple[str, ...]], tuple[int, str]]


class StepFailed(Exception):
    def __init__(self, step: Run, status: int, output: str) -> None:
        super().__init__(f"`{' '.join(step.argv)}` failed ({status}): {output.strip()}")
        self.step = step
        self.status = status
        self.output = output


@dataclass(frozen=True, slots=True)
class Ran:
    argv: tuple[str, ...]
    status: int
    output: str


def subprocess_runner(argv: tuple[str, ...]) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found"
    return done.returncode, done.stdout + done.stderr


def run_plan(steps: Iterable[Step], runner: Runner = subprocess_runner) -> list[Ran]:
    """Do each step in order; stop at the first checked command that fails (StepFailed)."""
    ran: list[Ran] = []
    for step in steps:
        match step:
            case MakeDir(path=path):
                path.mkdir(parents=True, exist_ok=True)
            case WriteFile(path=path, text=text):
                # Written whole then renamed: a service manager never reads half a file.
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(path)
            case RemoveFile(path=path):
                path.unlink(missing_ok=True)
            case Run(argv=argv, check=check):
                status, output = runner(argv)
                ran.append(Ran(argv, status, output))
                if check and status != 0:
                    raise StepFailed(step, status, output)
    return ran
