"""OpenAI-shaped error bodies and the middleware that guarantees every failure gets one.

Clients (the `openai` library, IDE extensions) parse `{"error": {"message", "type", "param",
"code"}}` to build their exceptions, so no route may answer an error with aiohttp's plain-text
pages or a traceback: the middleware turns aiohttp's HTTP exceptions, request validation
failures, raised `OpenAIError`s and unexpected exceptions into that shape. The error value itself
is `engine.types.Error`, the one definition of an OpenAI-shaped error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from salut_tui.api.schemas import RequestInvalid
from salut_tui.engine.types import Error, OpenAIError

log = logging.getLogger(__name__)

# Seconds a client is told to wait on a 503 that says nothing more precise (queue full).
RETRY_AFTER_SECONDS = 1


def response_for(error: Error, headers: Mapping[str, str] | None = None) -> web.Response:
    """The HTTP answer of an Error (one that arrived before any token, or a handler's)."""
    status = error.status if 400 <= error.status <= 599 else 500
    response = web.json_response(error.body(), status=status, headers=headers)
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    elif status == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if status == 401:
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="salut"')
    return response


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    error = Error.of(status, message, code=code, param=param)
    if type is not None:
        error = Error(message, type, code, status, param)
    return response_for(error, headers)


def _http_exception_response(exc: web.HTTPException) -> web.Response:
    code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status)
    message = exc.reason
    if exc.status == 404:
        message = "Unknown endpoint; the API lives under /v1 (see GET /v1/models)."
    elif exc.status == 413:
        message = f"The request body is too large: {exc.text or exc.reason}"
    headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
    return error_response(exc.status, message, code=code, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestInvalid as exc:
        return error_response(400, exc.message, param=exc.param)
    except OpenAIError as exc:
        return response_for(exc.error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        return _http_exception_response(exc)
    except web.RequestPayloadError as exc:
        return error_response(400, f"The request body could not be read: {exc}")
    except ConnectionResetError:
        raise  # the client is gone; there is nobody to answer
    except Exception:
        log.exception("unexpected error while serving %s %s", request.method, request.path)
        return error_response(500, "The server hit an internal error while serving this request.")
