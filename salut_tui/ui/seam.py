"""What the terminal UI reads from and calls on a node: the one seam between the screens and
whatever runs the node. The in-process `Node` satisfies it (`salut`, `salut serve` + UI), and
so does `remote.client.RemoteNode` (`salut attach`), which reads the same views and events over
the node's control routes. A screen that needs more than this from the node widens this
protocol (and both sides) on purpose.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from salut_tui.cluster.remote_models import RemoteLoadResult
from salut_tui.config import Settings
from salut_tui.engine.types import Chunk, GenerationRequest
from salut_tui.events import EventBus
from salut_tui.pairing.service import PairingStatus
from salut_tui.settings_change import SavedSettings
from salut_tui.shard.placement import ShardPlan
from salut_tui.shard.service import Mode
from salut_tui.views import ClusterView, ModelInfo, NodeStats


class LoadedModelView(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def memory_bytes(self) -> int: ...


class EngineView(Protocol):
    """The engine's read side: which models are in memory."""

    def loaded(self) -> Sequence[LoadedModelView]: ...

    def is_loaded(self, model_id: str) -> bool: ...


class ClusterControl(Protocol):
    """This node's identity in the cluster and the pairing actions."""

    @property
    def name(self) -> str: ...

    @property
    def node_id(self) -> str: ...

    def pairing_status(self) -> PairingStatus: ...

    def create_pairing_code(self, ttl: float = ...) -> PairingStatus: ...

    def cancel_pairing(self) -> None: ...

    async def join(self, address: str, code: str) -> Any: ...

    async def unpair(self, node_id: str) -> Any: ...


class KeepAliveView(Protocol):
    def time_left(self, model_id: str, now: float) -> float | None: ...


class UINode(Protocol):
    settings: Settings
    config_path: Path | None

    @property
    def attached(self) -> bool:
        """True when the UI shows a node running elsewhere (quitting leaves it running)."""
        ...

    @property
    def events(self) -> EventBus: ...

    @property
    def engine(self) -> EngineView | None: ...

    @property
    def cluster(self) -> ClusterControl | None: ...

    @property
    def port(self) -> int: ...

    @property
    def blas(self) -> str: ...

    async def start(self, *, preload: list[str] | None = None) -> None: ...

    async def stop(self) -> None: ...

    @property
    def keep_alive(self) -> KeepAliveView: ...

    def stats(self) -> NodeStats: ...

    def loaded_model_ids(self) -> list[str]: ...

    async def load_on(
        self,
        peer: str | None,
        model_id: str,
        *,
        keep_alive: str | int | float | None = ...,
        force: bool = ...,
        on_progress: Callable[[float, str], None] = ...,
    ) -> RemoteLoadResult: ...

    async def unload_on(self, peer: str | None, model_id: str) -> RemoteLoadResult: ...

    def pull_model(self, model_id: str, peer: str | None = ...) -> str: ...

    def cluster_view(self) -> ClusterView: ...

    def models(self) -> list[ModelInfo]: ...

    def local_models(self) -> list[ModelInfo]: ...

    async def load_model(self, model_id: str, *, force: bool = False) -> Any: ...

    async def unload_model(self, model_id: str) -> None: ...

    # Sharded models (the `s` and `u` keys of the Models screen); ModelError when refused.
    def shard_plan(self, model_id: str, nodes: list[str] | None = None) -> ShardPlan: ...

    async def load_sharded(
        self, model_id: str, nodes: list[str] | None = None, mode: Mode = ..., *, copy: bool = ...
    ) -> ShardPlan: ...

    async def unload_sharded(self, model_id: str) -> list[str]: ...

    async def import_gguf(
        self,
        gguf_path: Path,
        model_id: str,
        *,
        dtype: str = ...,
        progress: Callable[[float, str], None] | None = ...,
    ) -> Path: ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]: ...

    # Settings: saved into the node's own config file (ConfigError when refused), the live
    # keys applied there; the answer says which wait for a restart.
    async def change_settings(self, changes: Mapping[str, Any]) -> SavedSettings: ...

    # The level of the node's loggers (DEBUG chosen in Logs): the node's own, attached too; it
    # goes back to its configured level when the UI exits or detaches.
    def set_log_level(self, name: str) -> None: ...
