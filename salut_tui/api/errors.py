"""OpenAI-shaped error bodies and the middleware that guarantees every failure gets one.

Clients (the `openai` library, IDE extensions) parse `{"error": {"message", "type", "param",
"code"}}` to build their exceptions, so no route may answer an error with aiohttp's plain-text
pages or a traceback: the middleware turns aiohttp's HTTP exceptions, request validation
failures, model errors and unexpected exceptions into that shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from salut_tui.api.schemas import RequestInvalid
from salut_tui.engine.types import Error, ModelError

log = logging.getLogger(__name__)

# Seconds a client is told to wait when the engine queue is full (503 queue_full).
RETRY_AFTER_SECONDS = 1

_TYPE_BY_STATUS = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


def error_type_for(status: int) -> str:
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = error_body(message, type=type or error_type_for(status), param=param, code=code)
    response = web.json_response(body, status=status, headers=headers)
    if status == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def error_chunk_body(error: Error) -> dict:
    """The body of an engine/routing `Error` chunk, as sent in a response or an SSE event."""
    return error_body(error.message, type=error.type, param=error.param, code=error.code)


def response_for_error_chunk(error: Error) -> web.Response:
    """An Error that arrived before any token becomes a proper HTTP error response."""
    status = error.status if 400 <= error.status <= 599 else 500
    return error_response(
        status, error.message, type=error.type, param=error.param, code=error.code
    )


class APIError(Exception):
    """Raised by handlers for an error response with a given status and OpenAI fields."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def response(self) -> web.Response:
        return error_response(self.status, self.message, param=self.param, code=self.code)


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
    except APIError as exc:
        return exc.response()
    except ModelError as exc:
        return response_for_error_chunk(exc.to_error())
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
