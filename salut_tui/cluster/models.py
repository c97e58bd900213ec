"""Merging this node's models with its peers' into one cluster-wide list (pure)."""

from __future__ import annotations

from dataclasses import replace

from salut_tui.views import ModelInfo


def merge_models(local: list[ModelInfo], peers: list[tuple[str, dict]]) -> list[ModelInfo]:
    """Every model once per id: local ones first (owned_by "local"), then peers' (owned_by the
    first peer's name). `nodes` lists every node holding it loaded; `loaded` is true when any
    node has it loaded."""
    merged: dict[str, ModelInfo] = {m.id: m for m in local}
    for peer_name, state in peers:
        for model_id in state.get("loaded_models", []):
            known = merged.get(model_id)
            if known is None:
                merged[model_id] = ModelInfo(model_id, peer_name, True, nodes=(peer_name,))
            elif peer_name not in known.nodes:
                merged[model_id] = replace(known, loaded=True, nodes=(*known.nodes, peer_name))
        for model_id in state.get("available_models", []):
            if model_id not in merged:
                merged[model_id] = ModelInfo(model_id, peer_name, False)
    return list(merged.values())
