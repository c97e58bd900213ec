"""Leaving at once when the node goes away while the ring is still forming.

`mx.distributed.init` blocks without releasing the GIL (alone, rank 0 waits there for minutes),
so no thread of ours runs meanwhile: not the stdin reader that exits on EOF, not the ring watch.
For that stretch a tiny separate process stands guard: it shares our stdin without reading it,
waits for the pipe's hang-up (the node closed it or died), and terminates us then; it ends by
itself once we go away, and we stop it as soon as the ring is up.
"""

from __future__ import annotations

import os
import subprocess
import sys

# poll() with no events requested still reports POLLHUP: stdin's writers are all gone.
_GUARD = """
import os, select, signal, sys
guarded = int(sys.argv[1])
poller = select.poll()
poller.register(0, 0)
while os.getppid() == guarded:
    if poller.poll(500):
        os.kill(guarded, signal.SIGTERM)
        break
"""


class InitGuard:
    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _GUARD, str(os.getpid())],
            stdin=0,  # the node's pipe, never read here
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> InitGuard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
