"""The runner's two pipes to its node: protocol lines out on stdout, commands in on stdin.

stdout belongs to the protocol alone: the real stdout descriptor is kept privately and fd 1 is
pointed at stderr, so a stray print (ours, a library's, MLX's C++) cannot corrupt a message.
stdin is read by a daemon thread; EOF means the node is gone, and the runner exits at once
(`os._exit`: MLX may be blocked inside a ring operation that nothing else could interrupt).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections.abc import Callable

from salut_tui.shard.protocol import (
    Cancel,
    Generate,
    Message,
    NodeMessage,
    ProtocolError,
    Shutdown,
    decode,
    encode_line,
)

log = logging.getLogger(__name__)

EXIT_NODE_GONE = 3  # stdin reached EOF


class Channel:
    def __init__(self, on_eof: Callable[[], None] | None = None) -> None:
        sys.stdout.flush()
        self._out = os.dup(1)
        os.dup2(2, 1)  # fd 1 now writes to stderr
        sys.stdout = sys.stderr
        self._lock = threading.Lock()
        self.inbox: queue.SimpleQueue[NodeMessage] = queue.SimpleQueue()
        self._on_eof = on_eof or _exit_node_gone
        self._reader = threading.Thread(target=self._read, name="runner-stdin", daemon=True)

    def start(self) -> None:
        self._reader.start()

    def send(self, message: Message) -> None:
        data = encode_line(message)
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self._out, view)
                view = view[written:]

    def _read(self) -> None:
        stdin = sys.stdin.buffer
        for line in iter(stdin.readline, b""):
            if not line.strip():
                continue
            try:
                message = decode(line)
            except ProtocolError as exc:
                log.warning("ignoring a bad line from the node: %s", exc)
                continue
            if not isinstance(message, Generate | Cancel | Shutdown):
                log.warning("ignoring a %s message from the node", type(message).__name__)
                continue
            self.inbox.put(message)
        self._on_eof()


def _exit_node_gone() -> None:
    log.warning("stdin closed: the node is gone, exiting")
    os._exit(EXIT_NODE_GONE)
