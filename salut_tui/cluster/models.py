"""Merging this node's models with its peers' into one cluster-wide list (pure)."""

from __future__ import annotations

from dataclasses import replace

from salut_tui.views import ModelInfo, ShardView


def merge_models(local: list[ModelInfo], peers: list[tuple[str, dict]]) -> list[ModelInfo]:
    """Every model once per id: local ones first (owned_by "local"), then peers' (owned_by the
    first peer's name). `nodes` lists every node holding it loaded; `loaded` is true when any
    node has it loaded; `peers_with_files` lists the peers that have its files (loaded or not),
    which is where a copy can come from."""
    merged: dict[str, ModelInfo] = {m.id: m for m in local}
    for peer_name, state in peers:
        loaded = list(state.get("loaded_models", []))
        for model_id in loaded + list(state.get("available_models", [])):
            known = merged.get(model_id)
            if known is None:
                known = ModelInfo(model_id, peer_name, False)
            if peer_name not in known.peers_with_files:
                known = replace(known, peers_with_files=(*known.peers_with_files, peer_name))
            if model_id in loaded and peer_name not in known.nodes:
                known = replace(known, loaded=True, nodes=(*known.nodes, peer_name))
            merged[model_id] = known
    return list(merged.values())


def merge_sharded(models: list[ModelInfo], shards: list[ShardView]) -> list[ModelInfo]:
    """Add the sharded instances (their coordinators' views, from here or from peers): each
    model once, loaded, owned by its coordinator, with every participant and its layers."""
    merged: dict[str, ModelInfo] = {m.id: m for m in models}
    for view in shards:
        if view.rank != 0 or view.state not in ("starting", "ready"):
            continue
        names = tuple(p.name for p in view.participants)
        known = merged.get(view.model)
        nodes = tuple(dict.fromkeys((*(known.nodes if known else ()), *names)))
        merged[view.model] = ModelInfo(
            view.model,
            known.owned_by if known is not None and known.loaded else view.participants[0].name,
            view.state == "ready" or (known is not None and known.loaded),
            known.size_bytes if known is not None else None,
            nodes=nodes,
            here=known is not None and known.here,  # where its files are stays true
            peers_with_files=known.peers_with_files if known is not None else (),
            shard=view.participants,
        )
    return list(merged.values())
