"""What the API needs from the node it serves: a narrow protocol, not the whole `Node`.

Handlers read the settings (default model, API key), list models, describe the cluster, and
hand each parsed request to `generate`; the composition root satisfies this protocol.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from salut_tui.config import Settings
from salut_tui.engine.types import Chunk, GenerationRequest
from salut_tui.shutdown import ShutdownGate
from salut_tui.views import ClusterView, ModelInfo, NodeStats, SelfView


class ServingNode(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def version(self) -> str: ...

    @property
    def started_at(self) -> float: ...

    @property
    def gate(self) -> ShutdownGate:
        """Closed while the node drains before stopping (/health says so)."""
        ...

    def models(self) -> list[ModelInfo]:
        """Every model in the cluster, once per id (local first)."""
        ...

    def self_view(self) -> SelfView: ...

    def stats(self) -> NodeStats:
        """Load figures now (queue depth, in-flight requests): GET /metrics reads them."""
        ...

    def cluster_view(self) -> ClusterView: ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Chunks of one generation; closing the generator cancels it wherever it runs."""
        ...
