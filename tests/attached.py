"""Nodes run as `salut serve` runs them, for tests of an attached UI: on their own event loop
in a thread of the test process. The attached UI's key presses make blocking control requests
(a few ms against a node in another process); a node sharing the UI's loop could not answer
them, so the node gets a loop of its own here, as it has a process of its own in real use."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from salut_tui.node import Node
from salut_tui.remote.client import RemoteNode

T = TypeVar("T")


class NodeLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the nodes' loop and wait for it from the test's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    async def start(self, make: Callable[[], Node], preload: list[str] | None = None) -> Node:
        async def build() -> Node:
            node = make()  # built on its own loop, as in its own process
            await node.start(preload=preload or [])
            return node

        return await self.run(build())

    async def call(self, action: Callable[[], Awaitable[T]]) -> T:
        async def wrapped() -> T:
            return await action()

        return await self.run(wrapped())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def attach(node: Node) -> RemoteNode:
    """The attached UI's side: a RemoteNode on the node's control routes, started."""
    remote = RemoteNode("127.0.0.1", node.port, node.control_token)
    await remote.start()
    return remote
