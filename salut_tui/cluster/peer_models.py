"""Models on paired peers, for the node: which peer to reach (`linked_peer`, `holder_of`), a
copy from a peer (`pull`) or to one for its part of a sharded plan (`send_copy`), a load or an
unload there (`load_on`, `unload_on`). A mixin of `Cluster`, kept apart so that cluster.py stays
about links, trust and state; it uses only the attributes declared below.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from salut_tui.cluster.fetch import ask_fetch
from salut_tui.cluster.link import LinkLost, PeerLink
from salut_tui.cluster.pull import Report, pull_model
from salut_tui.cluster.remote_models import RemoteLoadResult, load_remote, unload_remote
from salut_tui.transfer.manifest import TransferError

if TYPE_CHECKING:  # the attributes Cluster gives this mixin
    from salut_tui.cluster.peers import PeerRecord, PeerTable
    from salut_tui.config import Settings
    from salut_tui.pairing.trust import TrustStore


class PeerModels:
    if TYPE_CHECKING:
        table: PeerTable
        trust: TrustStore
        settings: Settings

        def _live_link(self, node_id: str) -> PeerLink: ...

        def _models_changed(self) -> None: ...

    def linked_peer(self, peer_ref: str) -> PeerLink:
        """The link to a paired peer named by id, id prefix or name; TransferError in words
        when there is no such paired peer or it is not reachable now."""
        record = self.table.find(peer_ref)
        if record is None or not record.paired:  # a name shared with a stranger on the LAN
            paired = [
                r for r in self.table.all()
                if r.paired and (r.name == peer_ref or r.node_id.startswith(peer_ref))
            ]  # fmt: skip
            record = paired[0] if len(paired) == 1 else record
        if record is None or not record.paired or record.node_id not in self.trust:
            raise TransferError(
                f"'{peer_ref}' is not a paired peer: pair with it first (salut pair)"
            )
        if record.link is None or not record.linked:
            raise TransferError(f"{record.name} is paired but not reachable now")
        return record.link

    def holder_of(self, model_id: str) -> str | None:
        """A reachable paired peer that has the model's files (loaded ones first)."""
        ok = [r for r in self.table.all() if r.paired and r.health == "ok"]
        for record in sorted(ok, key=lambda r: model_id not in r.known_loaded):
            if model_id in r_models(record):
                return record.node_id
        return None

    async def pull(self, model_id: str, peer_ref: str | None, report: Report) -> Path:
        """Copy a model's files from a paired peer into this node's models dir."""
        ref = peer_ref or self.holder_of(model_id)
        if ref is None:
            raise TransferError(f"no reachable paired peer has the model '{model_id}'")
        # The peer's current link at each step: a copy outlives a replaced link.
        path = await pull_model(
            lambda: self.linked_peer(ref), model_id, self.settings.models_path(), report
        )
        self._models_changed()
        return path

    async def send_copy(
        self, node_id: str, model_id: str, files: frozenset[str] | None, report: Report
    ) -> bool:
        """Have a paired peer copy `model_id` (only `files`, when given) from this node, for
        its part of a sharded plan; returns whether its copy is partial."""
        try:
            link = self._live_link(node_id)
        except LinkLost as exc:
            raise TransferError(str(exc)) from None
        return await ask_fetch(link, model_id, files, report)

    async def load_on(
        self,
        peer_ref: str,
        model_id: str,
        *,
        keep_alive: object = None,
        force: bool = False,
        on_progress: Callable[[float, str], None] = lambda _f, _s: None,
    ) -> RemoteLoadResult:
        try:
            link = self.linked_peer(peer_ref)
        except TransferError as exc:
            return RemoteLoadResult(False, str(exc), "peer_not_found", 404)
        return await load_remote(
            link, model_id, keep_alive=keep_alive, force=force, on_progress=on_progress
        )

    async def unload_on(self, peer_ref: str, model_id: str) -> RemoteLoadResult:
        try:
            link = self.linked_peer(peer_ref)
        except TransferError as exc:
            return RemoteLoadResult(False, str(exc), "peer_not_found", 404)
        return await unload_remote(link, model_id)


def r_models(record: PeerRecord) -> frozenset[str]:
    """The models whose files a peer said it has (loaded or loadable)."""
    return record.known_loaded | record.known_available
