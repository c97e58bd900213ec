"""Proxying generations over peer links, both ends.

Requester: open a "generate" stream on the best peer's link and relay chunks as they arrive.
If that peer fails before the first token (link down, or an error such as "not loaded after
all"), try the next candidate. After the first token the stream belongs to that peer: if its
link dies the client gets an Error chunk at once (the link's liveness check bounds this to a
few seconds even when no TCP reset arrives). A link replaced by a newer one to the same peer is
not lost: it drains (the stream finishes on it; see `PeerLink.drain`). Closing the iterator
cancels the peer's work.

Server: run the request through this node's `generate` with `forwarded=True` on the request, so
that it is served here and never bounced on to a third node, and checked against this node's own
API key (the client's bearer token travels on the request, inside the encrypted link).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import replace

from salut_tui.cluster.link import LinkLost, PeerLink, RemoteError
from salut_tui.cluster.local import LocalNode
from salut_tui.cluster.wire import (
    chunk_from_bytes,
    chunk_to_bytes,
    error_from_json,
    request_from_json,
    request_to_json,
)
from salut_tui.engine.types import Chunk, Error, GenerationRequest, Token

GENERATE = "generate"


async def generate_remote(
    request: GenerationRequest, candidates: list[tuple[str, Callable[[], PeerLink | None]]]
) -> AsyncGenerator[Chunk, None]:
    """Chunks for `request` from the first candidate (name, link getter) that starts it."""
    body = request_to_json(replace(request, forwarded=True))
    last_error: Error | None = None
    for name, get_link in candidates:
        tried: list[PeerLink] = []  # this peer's links already lost under this request
        while (link := get_link()) is not None and not link.closed and link not in tried:
            # A link lost before the first token may have been replaced by a fresh one to the
            # same peer (two links crossed, or it re-linked): that one gets the request too.
            tried.append(link)
            started = False
            try:
                stream = await link.open(GENERATE, body)
            except (LinkLost, ConnectionError):
                continue
            try:
                async for payload in stream:
                    chunk = chunk_from_bytes(payload)
                    if not started and isinstance(chunk, Error):
                        last_error = chunk  # failed before the first token: try the next peer
                        break
                    started = started or isinstance(chunk, Token)
                    yield chunk
                else:
                    return
            except (LinkLost, ConnectionError):
                if started:
                    yield Error(
                        f"peer '{name}' went away in the middle of the response",
                        code="peer_unreachable",
                        status=502,
                    )
                    return
                last_error = Error(
                    f"peer '{name}' is unreachable", code="peer_unreachable", status=502
                )
                continue
            except RemoteError as exc:
                error = error_from_json(exc.body)
                if started:
                    yield error
                    return
                last_error = error
            finally:
                await stream.aclose()
            break  # this peer answered with an error: the next one
    yield last_error or Error(
        f"no peer could serve the model '{request.model}'", code="peer_unreachable", status=503
    )


async def serve_generate(
    local: LocalNode, peer_name: str, body: dict
) -> AsyncGenerator[bytes, None]:
    """The peer side of a proxied request: served by this node, never bounced further."""
    request = replace(request_from_json(body), client=f"peer {peer_name}", forwarded=True)
    chunks = local.generate(request)
    try:
        async for chunk in chunks:
            yield chunk_to_bytes(chunk)
    finally:  # a CANCEL from the requester lands here: closing generate stops the engine's work
        await chunks.aclose()
