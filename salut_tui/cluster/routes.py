"""The peer and control endpoints, added beside the OpenAI API (outside /v1, so the client API
key never opens them and peer credentials never open /v1).

    GET  /salut/hello                  public facts, the same as the mDNS TXT record
    GET  /salut/pair    (websocket)    the pairing protocol; refused unless a code is waiting
    GET  /salut/link    (websocket)    the peer link; refused unless the caller is paired
    /salut/control/...                 the `salut pair/peers/unpair` commands; they need the
                                       token written (mode 0600) in this node's data dir
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from salut_tui.cluster.discovery import HELLO_PATH
from salut_tui.cluster.link import LINK_PATH, MAX_FRAME, NotPaired
from salut_tui.pairing.keys import CryptoFailure
from salut_tui.pairing.service import PAIR_PATH, PairingError

if TYPE_CHECKING:
    from salut_tui.cluster.cluster import Cluster

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/salut/control"
CONTROL_HEADER = "X-Salut-Control"
CONTROL_TOKEN_FILE = "control.token"
_STATUS = {"busy": 409, "rate_limited": 429, "invalid_code": 400, "unreachable": 502}


def install(app: web.Application, cluster: Cluster) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response(cluster.hello())

    async def pair(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * 1024)
        await ws.prepare(request)
        await cluster.pairing.host(ws, request.remote or "")
        return ws

    async def link(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME)
        await ws.prepare(request)
        try:
            await cluster.accept_link(ws)
        except (NotPaired, CryptoFailure, TimeoutError, KeyError, TypeError, ValueError) as exc:
            log.info("refused a peer link from %s: %s", request.remote, exc)
        await ws.close()
        return ws

    @web.middleware
    async def control_guard(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.path.startswith(CONTROL_PREFIX):
            given = request.headers.get(CONTROL_HEADER, "")
            if not hmac.compare_digest(given.encode(), cluster.control_token.encode()):
                return _error(
                    403, "control routes need the token from this node's data dir", "forbidden"
                )
        return await handler(request)

    async def peers(request: web.Request) -> web.Response:
        return web.json_response(
            {"node": cluster.self_json(), "peers": [p.to_json() for p in cluster.peers()]}
        )

    async def pairing_status(request: web.Request) -> web.Response:
        return web.json_response(cluster.pairing_status())

    async def pair_code(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            return web.json_response(cluster.create_pairing_code(float(body.get("ttl", 300))))
        except PairingError as exc:
            return _error(_STATUS.get(exc.reason, 400), str(exc), exc.reason)

    async def pair_join(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            peer = await cluster.join(str(body["address"]), str(body["code"]))
        except KeyError:
            return _error(400, "give 'address' and 'code'", "invalid_request")
        except PairingError as exc:
            return _error(_STATUS.get(exc.reason, 400), str(exc), exc.reason)
        return web.json_response(
            {"paired": True, "id": peer.node_id, "name": peer.name, "address": peer.address}
        )

    async def unpair(request: web.Request) -> web.Response:
        removed = await cluster.unpair(request.match_info["peer"])
        if removed is None:
            return _error(404, f"no paired peer '{request.match_info['peer']}'", "peer_not_found")
        return web.json_response({"unpaired": True, "id": removed.node_id, "name": removed.name})

    app.middlewares.append(control_guard)
    app.router.add_get(HELLO_PATH, hello)
    app.router.add_get(PAIR_PATH, pair)
    app.router.add_get(LINK_PATH, link)
    app.router.add_get(f"{CONTROL_PREFIX}/peers", peers)
    app.router.add_get(f"{CONTROL_PREFIX}/pair", pairing_status)
    app.router.add_post(f"{CONTROL_PREFIX}/pair/code", pair_code)
    app.router.add_post(f"{CONTROL_PREFIX}/pair/join", pair_join)
    app.router.add_delete(f"{CONTROL_PREFIX}/peers/{{peer}}", unpair)


async def _json(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(status: int, message: str, code: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "code": code}},
        status=status,
    )
