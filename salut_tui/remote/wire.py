"""The attach wire format (pure): node events and views as JSON, and back.

Events are the frozen dataclasses of `salut_tui.events`, sent as `{"type": <class name>, ...}`;
views as `views.to_json` writes them. One definition each way, tested as a round trip. A chat
request and its chunks cross as they cross a peer link (`cluster/wire.py`, one contract).

`WIRE_VERSION` is sent in every snapshot and by `hello`; a client that reads another version
refuses to attach (the node and the UI come from different installs) instead of misreading.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from salut_tui import events
from salut_tui.cluster.control import CONTROL_PREFIX
from salut_tui.pairing.machine import Role, State
from salut_tui.pairing.service import PairingStatus
from salut_tui.transfers import TransferView
from salut_tui.views import (
    ClusterView,
    ModelInfo,
    NodeStats,
    PeerView,
    SelfView,
    ShardPartView,
    ShardView,
)

WIRE_VERSION = 2  # 1: views, events and model actions; 2: transfers, chat, import, settings
UI_PREFIX = f"{CONTROL_PREFIX}/ui"  # the attach routes (`routes.py`, `action_routes.py`)

EVENT_TYPES: dict[str, type[events.Event]] = {
    cls.__name__: cls
    for cls in vars(events).values()
    if isinstance(cls, type) and issubclass(cls, events.Event) and cls is not events.Event
}


class WireError(ValueError):
    """A message that is not what the other side should send."""


def event_to_json(event: events.Event) -> dict[str, Any]:
    return {"type": type(event).__name__, **dataclasses.asdict(event)}


def event_from_json(data: dict[str, Any]) -> events.Event:
    try:
        cls = EVENT_TYPES[data["type"]]
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        if cls is events.TransferChanged:  # the one event with a nested view
            values["view"] = transfer_from_json(data["view"])
        return cls(**values)
    except (KeyError, TypeError) as exc:
        raise WireError(f"not a node event: {exc}") from None


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    if "shards" in data:  # nested views: rebuilt as the types the screens read
        out["shards"] = tuple(ShardView.from_json(s) for s in data["shards"])
    return out


def cluster_from_json(data: dict[str, Any]) -> ClusterView:
    try:
        return ClusterView(
            SelfView(**_tuples(data["node"])),
            tuple(PeerView(**_tuples(p)) for p in data["peers"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"not a cluster view: {exc}") from None


def stats_from_json(data: dict[str, Any]) -> NodeStats:
    try:
        return NodeStats(**data)
    except TypeError as exc:
        raise WireError(f"not node stats: {exc}") from None


def pairing_from_json(data: dict[str, Any]) -> PairingStatus:
    return PairingStatus(
        role=Role(data["role"]) if data.get("role") else None,
        state=State(data["state"]),
        code=data.get("code"),
        expires_in=data.get("expires_in"),
        peer=data.get("peer"),
        failures=int(data.get("failures", 0)),
        retry_after=float(data.get("retry_after", 0.0)),
        reason=data.get("reason"),
    )


def model_from_json(data: dict[str, Any]) -> ModelInfo:
    try:
        fields = _tuples(data)
        if "shard" in data:  # a sharded model's participants
            fields["shard"] = tuple(
                ShardPartView(str(p["id"]), str(p["name"]), int(p["rank"]), tuple(p["layers"]))
                for p in data["shard"]
            )
        return ModelInfo(**fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"not a model: {exc}") from None


def transfer_from_json(data: dict[str, Any]) -> TransferView:
    try:
        return TransferView(**data)
    except TypeError as exc:
        raise WireError(f"not a transfer: {exc}") from None


def progress_line(fraction: float, stage: str) -> dict[str, Any]:
    """A line of an NDJSON answer that reports progress (an import); the last line is the
    result or `{"error": ...}`."""
    return {"progress": fraction, "stage": stage}
