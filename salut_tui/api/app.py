"""The aiohttp application of the OpenAI-compatible API (`create_app(node)`, any `ServingNode`).

`Node.start()` builds it and runs it with an AppRunner; tests build it around a node whose engine
is started. Other packages (the cluster's peer routes) may add routes to the returned app before
it is started; the API key middleware only guards /v1, so their own credentials apply there.
"""

from __future__ import annotations

from aiohttp import web

from salut_tui.api.auth import make_auth_middleware
from salut_tui.api.errors import error_middleware
from salut_tui.api.metrics import ApiMetrics, make_metrics_middleware
from salut_tui.api.routes import METRICS, NODE, routes
from salut_tui.api.serving import ServingNode

__all__ = ["NODE", "ServingNode", "create_app"]  # NODE: the app key handlers find the node at

# Long conversations are sent whole with every request; aiohttp's 1 MiB default is too small
# for a long context window.
MAX_BODY_BYTES = 32 * 1024 * 1024


def create_app(node: ServingNode) -> web.Application:
    metrics = ApiMetrics(node)  # this node's own registry (GET /metrics)
    app = web.Application(
        # The error middleware is outermost but for the metrics one (which counts the status the
        # client got), so that even an auth failure or a crash in another middleware ends as an
        # OpenAI-shaped body.
        middlewares=[
            make_metrics_middleware(metrics),
            error_middleware,
            make_auth_middleware(lambda: node.settings.api_key),
        ],
        client_max_size=MAX_BODY_BYTES,
        # Cancel the handler when its client disconnects: a non-streaming request writes nothing
        # until it is done, so without this a dropped client would keep the engine busy.
        handler_args={"handler_cancellation": True},
    )
    app[NODE] = node
    app[METRICS] = metrics
    app.add_routes(routes)
    return app
