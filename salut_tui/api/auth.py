"""Optional API key for the client API.

When `settings.api_key` is set, every route under /v1 and /metrics needs
`Authorization: Bearer <key>` (a scrape tells which models a node serves and how busy it is).
/health stays open (load balancers and `curl` checks), and routes outside /v1 (the peer link)
have their own credentials: the client key is never a peer credential and vice versa.
The key is read on every request, so a key changed in the UI's Settings applies at once.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from salut_tui.api.errors import error_response

API_PREFIX = "/v1"
METRICS_PATH = "/metrics"


def is_protected(path: str) -> bool:
    return path in (API_PREFIX, METRICS_PATH) or path.startswith(API_PREFIX + "/")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def key_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison, so response timing does not leak how much of a guess matched."""
    if given is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def _unauthorized(message: str) -> web.Response:
    return error_response(401, message, type="invalid_request_error", code="invalid_api_key")


def make_auth_middleware(current_key: Callable[[], str]) -> Callable:
    """A middleware checking the key that `current_key()` returns ("" means no key needed)."""

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        expected = current_key()
        if expected and is_protected(request.path):
            token = bearer_token(request.headers.get("Authorization"))
            if token is None:
                return _unauthorized(
                    "You didn't provide an API key. This node needs one in an "
                    "'Authorization: Bearer <key>' header."
                )
            if not key_matches(expected, token):
                return _unauthorized("Incorrect API key provided.")
        return await handler(request)

    return auth_middleware
