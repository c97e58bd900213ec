"""What the cluster needs from the node it runs in: a narrow protocol, not the whole `Node`.

The cluster reports this node's state to peers, lists its models, and serves the requests peers
forward to it; the composition root (`Node`) satisfies this protocol, and tests
may pass anything else that does.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Protocol

from salut_tui.engine.types import Chunk, GenerationRequest
from salut_tui.views import ModelInfo, NodeStats, SelfView


class LoadedModel(Protocol):
    @property
    def memory_bytes(self) -> int: ...


class LocalNode(Protocol):
    @property
    def port(self) -> int:
        """The API port this node is bound to (known once it has started)."""
        ...

    @property
    def version(self) -> str: ...

    def stats(self) -> NodeStats: ...

    def loaded_model_ids(self) -> list[str]: ...

    def local_models(self) -> list[ModelInfo]:
        """Models loaded here, then those this node could load (scans directories: not cheap)."""
        ...

    def self_view(self) -> SelfView: ...

    def locate_model(self, model_id: str) -> Path | None:
        """The directory of a model whose files are on this node (what a peer may copy)."""
        ...

    async def load_model(
        self, model_id: str, *, force: bool = False, keep_alive: str | int | float | None = None
    ) -> LoadedModel:
        """Load a model here (a peer asked); ModelError when it cannot (e.g. 507: no room)."""
        ...

    async def unload_model(self, model_id: str) -> None: ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Serve a request; one a peer forwarded has `forwarded=True` and is served here."""
        ...
