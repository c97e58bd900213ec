"""Noticing a lost ring peer even when MLX does not raise it.

When a peer dies, MLX's ring backend prints its socket errors on stderr and fails the operations
pending at that moment ("[ring] Too many send/recv errors. Failing pending tasks..."); an
operation submitted after that may then wait forever (seen with three ranks: the survivor blocks
in its next `all_sum`). So the runner routes its own stderr through a pipe, copies every line on
to the real stderr, and treats the ring's error lines as the peer's death: unless the process has
exited by itself within a short grace period (the usual case: the failed operation raised and the
runner reported it), `on_lost` runs (it writes `fatal` and exits).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

# Lines of MLX's ring backend that only appear once a connection is broken.
RING_ERRORS = (
    b"was closed by the peer",
    b"failed with errno",
    b"Too many send/recv errors",
    b"connection to a peer was lost",
)
GRACE_S = 1.5


class RingWatch:
    def __init__(self, on_lost: Callable[[str], None], grace_s: float = GRACE_S) -> None:
        self._on_lost = on_lost
        self._grace_s = grace_s
        self._fired = threading.Event()
        read, write = os.pipe()
        self._stderr = os.dup(2)
        os.dup2(write, 2)
        os.close(write)
        self._read = read
        self._thread = threading.Thread(target=self._pump, name="ring-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        while True:
            data = os.read(self._read, 65536)
            if not data:
                return
            _write_all(self._stderr, data)
            pending = (pending + data)[-4096:]
            lines = pending.split(b"\n")
            pending = lines.pop()
            for line in lines:
                if b"[ring]" in line and any(marker in line for marker in RING_ERRORS):
                    self._lost(line.decode(errors="replace").strip())

    def _lost(self, line: str) -> None:
        if self._fired.is_set():
            return
        self._fired.set()
        timer = threading.Timer(self._grace_s, self._on_lost, args=(line,))
        timer.daemon = True
        timer.start()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
