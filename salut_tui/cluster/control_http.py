"""The server side of the local control routes: reading a body and answering an error, the same
way for pairing, model and attach routes (the client side is `control.py`)."""

from __future__ import annotations

from aiohttp import web

from salut_tui.engine.types import Error


async def json_body(request: web.Request) -> dict:
    """The request's JSON object, or {} for no body, bad JSON or anything but an object."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def control_error(status: int, message: str, code: str) -> web.Response:
    """An OpenAI-shaped error body, as every other error of the node."""
    error = Error(message, "invalid_request_error", code, status)
    return web.json_response(error.body(), status=status)
