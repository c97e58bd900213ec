"""What the cluster needs from the node it runs in: a narrow protocol, not the whole `Node`.

The cluster reports this node's state to peers, lists its models, and serves the requests peers
forward to it; the composition root (`Node`) satisfies this protocol, and tests
may pass anything else that does.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from salut_tui.engine.types import Chunk, GenerationRequest
from salut_tui.views import ModelInfo, NodeStats, SelfView


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

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Serve a request; one a peer forwarded has `forwarded=True` and is served here."""
        ...
