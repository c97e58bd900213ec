"""The peer and control endpoints, added beside the OpenAI API (outside /v1, so the client API
key never opens them and peer credentials never open /v1).

    GET  /salut/hello                  public facts, the same as the mDNS TXT record
    GET  /salut/pair    (websocket)    the pairing protocol; refused unless a code is waiting
    GET  /salut/link    (websocket)    the peer link; refused unless the caller is paired
    GET  /salut/bulk                   the bytes of one piece of a model copy; refused unless it
                                       brings a one-time ticket issued over a link, and its proof
    /salut/control/...                 the `salut pair/peers/unpair` commands; they need the
                                       token written (mode 0600) in this node's data dir

The two websockets are open to anyone on the LAN until the other side proves itself, so they
are cheap to refuse: at most `PRE_AUTH_MAX` unauthenticated connections at once (and
`PRE_AUTH_PER_SOURCE` from one address), small messages only, no compression (no zip bombs),
and a deadline for the handshake. An authenticated link no longer counts against the limit.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections import Counter
from collections.abc import Callable, Iterator

from aiohttp import web
from aiohttp.typedefs import Handler

from salut_tui.cluster.bulk import BULK_PATH, serve_bulk
from salut_tui.cluster.cluster import Cluster
from salut_tui.cluster.control import CONTROL_HEADER, CONTROL_PREFIX
from salut_tui.cluster.control_http import control_error, json_body
from salut_tui.cluster.discovery import HELLO_PATH
from salut_tui.cluster.frames import MAX_WIRE_MESSAGE
from salut_tui.cluster.link_handshake import LINK_PATH, NotPaired
from salut_tui.pairing.keys import CryptoFailure
from salut_tui.pairing.reasons import http_status
from salut_tui.pairing.service import PAIR_MAX_MESSAGE, PAIR_PATH, PairingError
from salut_tui.views import to_json

log = logging.getLogger(__name__)

PRE_AUTH_MAX = 8  # unauthenticated websockets (pairing + link) at once
PRE_AUTH_PER_SOURCE = 2  # of which from one address


class PreAuthGate:
    """Counts unauthenticated connections, in total and per source address."""

    def __init__(self, total: int = PRE_AUTH_MAX, per_source: int = PRE_AUTH_PER_SOURCE) -> None:
        self.total, self.per_source = total, per_source
        self._open: Counter[str] = Counter()

    def admits(self, source: str) -> bool:
        return self._open.total() < self.total and self._open[source] < self.per_source

    @contextlib.contextmanager
    def held(self, source: str) -> Iterator[Callable[[], None]]:
        """Hold a place until the block ends or the returned `release` is called."""
        self._open[source] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open[source] -= 1
                if self._open[source] <= 0:
                    del self._open[source]

        try:
            yield release
        finally:
            release()


def install(app: web.Application, cluster: Cluster) -> None:
    gate = PreAuthGate()

    def busy(source: str) -> web.Response | None:
        if gate.admits(source):
            return None
        log.info("refused an unauthenticated connection from %s: too many open", source)
        return web.json_response(
            {"error": "too many unauthenticated connections"},
            status=503,
            headers={"Retry-After": "2"},
        )

    async def hello(request: web.Request) -> web.Response:
        return web.json_response(cluster.hello())

    async def pair(request: web.Request) -> web.StreamResponse:
        source = request.remote or ""
        if (refused := busy(source)) is not None:
            return refused
        with gate.held(source):
            ws = web.WebSocketResponse(max_msg_size=PAIR_MAX_MESSAGE, compress=False)
            await ws.prepare(request)
            await cluster.pairing.host(ws, source)
        return ws

    async def link(request: web.Request) -> web.StreamResponse:
        source = request.remote or ""
        if (refused := busy(source)) is not None:
            return refused
        with gate.held(source) as authenticated:
            ws = web.WebSocketResponse(
                max_msg_size=MAX_WIRE_MESSAGE, compress=False, receive_timeout=None
            )
            await ws.prepare(request)
            try:
                await cluster.accept_link(ws, on_authenticated=authenticated)
            except (
                NotPaired, CryptoFailure, TimeoutError, KeyError, TypeError, ValueError
            ) as exc:  # fmt: skip
                log.info("refused a peer link from %s: %s", source, exc)
            await ws.close()
        return ws

    async def bulk(request: web.Request) -> web.StreamResponse:
        # Open to the LAN like the link, but worth nothing without a ticket: a stranger gets a
        # 403 after a dict lookup, before any file is opened or any buffer allocated.
        files = cluster.model_files
        return await serve_bulk(request, files.tickets, files.served)

    @web.middleware
    async def control_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            given = request.headers.get(CONTROL_HEADER, "")
            if not hmac.compare_digest(given.encode(), cluster.control_token.encode()):
                return control_error(
                    403, "control routes need the token from this node's data dir", "forbidden"
                )
        return await handler(request)

    async def peers(request: web.Request) -> web.Response:
        view = cluster.view()
        return web.json_response(
            {"node": to_json(view.node), "peers": [to_json(p) for p in view.peers]}
        )

    async def pairing_status(request: web.Request) -> web.Response:
        return web.json_response(cluster.pairing_status().to_json())

    async def pair_code(request: web.Request) -> web.Response:
        body = await json_body(request)
        try:
            status = cluster.create_pairing_code(float(body.get("ttl", 300)))
        except PairingError as exc:
            return control_error(http_status(exc.reason), str(exc), exc.reason)
        except (TypeError, ValueError):
            return control_error(400, "'ttl' must be a number of seconds", "invalid_request")
        return web.json_response(status.to_json())

    async def pair_join(request: web.Request) -> web.Response:
        body = await json_body(request)
        try:
            peer = await cluster.join(str(body["address"]), str(body["code"]))
        except KeyError:
            return control_error(400, "give 'address' and 'code'", "invalid_request")
        except PairingError as exc:
            return control_error(http_status(exc.reason), str(exc), exc.reason)
        return web.json_response(
            {"paired": True, "id": peer.node_id, "name": peer.name, "address": peer.address}
        )

    async def unpair(request: web.Request) -> web.Response:
        removed = await cluster.unpair(request.match_info["peer"])
        if removed is None:
            return control_error(
                404, f"no paired peer '{request.match_info['peer']}'", "peer_not_found"
            )
        return web.json_response({"unpaired": True, "id": removed.node_id, "name": removed.name})

    app.middlewares.append(control_guard)
    app.router.add_get(HELLO_PATH, hello)
    app.router.add_get(PAIR_PATH, pair)
    app.router.add_get(LINK_PATH, link)
    app.router.add_get(BULK_PATH, bulk)
    app.router.add_get(f"{CONTROL_PREFIX}/peers", peers)
    app.router.add_get(f"{CONTROL_PREFIX}/pair", pairing_status)
    app.router.add_post(f"{CONTROL_PREFIX}/pair/code", pair_code)
    app.router.add_post(f"{CONTROL_PREFIX}/pair/join", pair_join)
    app.router.add_delete(f"{CONTROL_PREFIX}/peers/{{peer}}", unpair)
