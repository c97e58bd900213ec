"""Loading and unloading a model on a peer, over the peer link (both ends).

    model.load   {model, keep_alive?, force?}  -> JSON payloads: {"progress", "stage"}...
                                                  then {"loaded", "memory_bytes"} or {"error"}
    model.unload {model}                       -> {"unloaded": true} or {"error"}

The peer runs its own memory check: a model that does not fit there comes back as its 507
message, in words, to show here. A peer cannot skip that check: `force` is for a node's owner
only (its CLI and UI, through its own control routes); asked over the link it is refused (403
`force_refused`), and nothing is loaded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from salut_tui.cluster.link import LinkLost, PeerLink, RemoteError
from salut_tui.cluster.local import LocalNode
from salut_tui.engine.types import ModelError
from salut_tui.events import Event, EventBus, ModelLoadProgressed

MODEL_LOAD = "model.load"
MODEL_UNLOAD = "model.unload"


@dataclass(frozen=True, slots=True)
class RemoteLoadResult:
    ok: bool
    message: str  # what to tell the person: loaded (with its size) or why not
    code: str = ""
    status: int = 200


async def serve_load(
    local: LocalNode, events: EventBus, body: dict, *, node_name: str
) -> AsyncIterator[bytes]:
    model_id = str(body.get("model", ""))
    if body.get("force"):
        yield _error_json(force_refused(node_name, model_id))
        return
    keep_alive = body.get("keep_alive")
    progress: asyncio.Queue[Any] = asyncio.Queue()

    def watch(event: Event) -> None:
        if isinstance(event, ModelLoadProgressed) and event.model_id == model_id:
            progress.put_nowait({"progress": event.fraction, "stage": event.stage})

    unsubscribe = events.subscribe(watch)
    task = asyncio.ensure_future(
        local.load_model(model_id, keep_alive=keep_alive)  # never forced: see above
    )
    try:
        while not task.done():
            getter = asyncio.ensure_future(progress.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield json.dumps(getter.result()).encode()
            else:
                getter.cancel()
        while not progress.empty():  # the last steps may land in the same turn as the end
            yield json.dumps(progress.get_nowait()).encode()
        try:
            info = task.result()
        except ModelError as exc:
            yield _error_json(exc)
            return
        yield json.dumps({"loaded": True, "memory_bytes": info.memory_bytes}).encode()
    finally:
        unsubscribe()


async def serve_unload(local: LocalNode, body: dict) -> AsyncIterator[bytes]:
    try:
        await local.unload_model(str(body.get("model", "")))
    except ModelError as exc:
        yield _error_json(exc)
        return
    yield json.dumps({"unloaded": True}).encode()


def force_refused(node_name: str, model_id: str) -> ModelError:
    """A forced load (past the memory check) asked by a peer: only the node's owner may."""
    return ModelError(
        f"only {node_name}'s owner may force a load past the memory check: run "
        f"`salut load {model_id} --force` on {node_name}, or load without --force",
        status=403, code="force_refused",
    )  # fmt: skip


def _error_json(exc: ModelError) -> bytes:
    error = exc.to_error()
    return json.dumps({"error": {**error.body()["error"], "status": error.status}}).encode()


def _failure(peer: str, answer: dict) -> RemoteLoadResult:
    error = answer.get("error") or {}
    return RemoteLoadResult(
        False, f"{peer}: {error.get('message', 'failed')}", str(error.get("code", "")),
        int(error.get("status", 500)),
    )  # fmt: skip


async def load_remote(
    link: PeerLink,
    model_id: str,
    *,
    keep_alive: object = None,
    force: bool = False,
    on_progress: Callable[[float, str], None] = lambda _f, _s: None,
) -> RemoteLoadResult:
    peer = link.peer.name
    body = {"model": model_id, "keep_alive": keep_alive, "force": force}
    try:
        stream = await link.open(MODEL_LOAD, body)
        try:
            async for payload in stream:
                answer = json.loads(payload)
                if "progress" in answer:
                    on_progress(float(answer["progress"]), str(answer.get("stage", "")))
                elif answer.get("loaded"):
                    size = int(answer.get("memory_bytes", 0)) / 1e6
                    return RemoteLoadResult(True, f"loaded {model_id} on {peer} ({size:.1f} MB)")
                else:
                    return _failure(peer, answer)
        finally:
            await stream.aclose()
    except (LinkLost, ConnectionError):
        return RemoteLoadResult(False, f"{peer} went away during the load", "peer_unreachable", 502)
    except RemoteError as exc:
        return RemoteLoadResult(False, f"{peer}: {exc}", "peer_error", 502)
    return RemoteLoadResult(False, f"{peer} ended the load without an answer", "peer_error", 502)


async def unload_remote(link: PeerLink, model_id: str) -> RemoteLoadResult:
    peer = link.peer.name
    try:
        answer = await link.request(MODEL_UNLOAD, {"model": model_id})
    except (LinkLost, ConnectionError):
        return RemoteLoadResult(False, f"{peer} is unreachable", "peer_unreachable", 502)
    except RemoteError as exc:
        return RemoteLoadResult(False, f"{peer}: {exc}", "peer_error", 502)
    if answer.get("unloaded"):
        return RemoteLoadResult(True, f"unloaded {model_id} on {peer}")
    return _failure(peer, answer)
