"""`salut attach`: the same terminal UI on a node that already runs (a `salut serve` service on a
headless machine, reached over SSH). Quitting detaches; the node keeps running."""

from __future__ import annotations

import logging
import sys

from salut_tui.remote.client import AttachError, RemoteNode
from salut_tui.ui.app import SalutApp, run_app


async def run_attached(remote: RemoteNode) -> int:
    """Attach, run the UI until it quits, detach. Exit status 2 when nothing answers."""
    try:
        await remote.start()
    except (AttachError, OSError) as exc:
        print(f"salut: cannot attach to {remote.host}:{remote.remote_port}: {exc}", file=sys.stderr)
        return 2
    app = SalutApp(remote, start_node=False)
    # Stream handlers set up for headless use would write over the screen while the app runs.
    root = logging.getLogger()
    terminal = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    for handler in terminal:
        root.removeHandler(handler)
    try:
        return await run_app(app)  # stops (detaches) the remote node whatever way the app ends
    finally:
        for handler in terminal:
            root.addHandler(handler)
