"""`run_node`: the one way a node runs, headless (`salut serve`) or under a user interface.

The CLI parses arguments into `Settings` and calls `run_node`; a UI is passed in as a coroutine
function that gets the built (not yet started) node and what to preload, and returns the exit
code. Nothing else builds a `Node` for a real run.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from salut_tui.config import Settings
from salut_tui.node import Node
from salut_tui.shutdown import drain
from salut_tui.startup import require_models

log = logging.getLogger("salut")

# A user interface: runs the node (starting and stopping it) and returns the exit code.
RunUI = Callable[[Node, list[str]], Awaitable[int]]


async def run_node(
    settings: Settings,
    *,
    config_path: Path | None = None,
    models: Sequence[str] = (),
    ui: RunUI | None = None,
) -> int:
    """Build the node and run it under `ui`, or headless until SIGINT/SIGTERM.

    Raises ModelError when a `--model` directory holds no model (before anything starts).
    """
    node = Node(settings, config_path=config_path)
    preload = preload_ids(node, list(models))
    if ui is not None:
        return await ui(node, preload)
    return await _run_headless(node, preload, list(models))


def preload_ids(node: Node, models: list[str]) -> list[str]:
    """What a node loads at start: `--model` values (ids, or model directories registered under
    their path), else the config's `preload`, else the default model when this node has it."""
    if models:
        return [node.registry.add_path(v) if Path(v).expanduser().is_dir() else v for v in models]
    if node.settings.preload:
        return list(node.settings.preload)
    if node.engine is not None and node.registry.has(node.settings.default_model):
        return [node.settings.default_model]
    return []


async def _run_headless(node: Node, preload: list[str], models: list[str]) -> int:
    settings = node.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start(preload=preload)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc.strerror or exc)
        await node.stop()
        return 2
    if models and (failure := await require_models(node.load_model, preload, models)):
        log.error("%s", failure)  # serving on empty would only answer 404s
        await node.stop()
        return 2
    await stop.wait()
    log.info("shutting down")
    stop.clear()  # a second signal ends the grace period at once
    await drain(node.gate, lambda: node.stats().in_flight, settings.shutdown_grace, cut_short=stop)
    await node.stop()
    return 0
