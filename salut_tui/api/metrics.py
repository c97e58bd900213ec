"""Prometheus metrics of one node, served at `GET /metrics` (behind the API key when one is set).

Each app gets its own `CollectorRegistry`, never prometheus_client's global one: tests (and a
process running several nodes) build many apps, and a global registry would refuse the second
set of metric names. Two kinds of figures:
- events counted as they happen: requests by route/model/status (a middleware), tokens in and
  out, time to first token and decode rate (a wrapper around a generation's chunks);
- state read when Prometheus scrapes (`NodeCollector`): queue depth, in-flight requests, loaded
  models and their memory, peers by health, peer link round trips. Reading at scrape time keeps
  them exact without any hook in the engine or the cluster.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from contextlib import aclosing
from typing import get_args

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from salut_tui.api.serving import ServingNode
from salut_tui.engine.types import Chunk, Finish, Token
from salut_tui.views import Health

# Where a handler notes the model a request asked for (the middleware labels the count with it).
MODEL_KEY = "salut_metrics_model"

# Unknown model ids (404) and unparsable bodies (400) are whatever a client typed: labelling
# them would let any client grow the series without bound.
_UNLABELLED_STATUSES = frozenset({400, 404})

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DECODE_RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class ApiMetrics:
    """The registry of one node's API and the instruments the handlers feed."""

    def __init__(self, node: ServingNode) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "salut_requests",
            "HTTP requests answered, by route, model and status.",
            ["route", "model", "status"],
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "salut_prompt_tokens",
            "Prompt tokens of finished generations.",
            ["model"],
            registry=self.registry,
        )
        self.completion_tokens = Counter(
            "salut_completion_tokens",
            "Generated tokens of finished generations.",
            ["model"],
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "salut_time_to_first_token_seconds",
            "Seconds from a parsed request being handed to the node to its first token.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.decode_rate = Histogram(
            "salut_decode_tokens_per_second",
            "Tokens per second after the first token, per generation of 2 tokens or more.",
            ["model"],
            buckets=DECODE_RATE_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(NodeCollector(node))

    def exposition(self) -> bytes:
        return _generate_latest(self.registry)

    async def watch(
        self, model: str, chunks: AsyncGenerator[Chunk, None]
    ) -> AsyncGenerator[Chunk, None]:
        """`chunks`, passed through, timed and counted. Closing this closes `chunks`."""
        began = time.perf_counter()
        first: float | None = None
        async with aclosing(chunks):
            async for chunk in chunks:
                if isinstance(chunk, Token) and first is None and chunk.text:
                    first = time.perf_counter()
                    self.time_to_first_token.labels(model).observe(first - began)
                elif isinstance(chunk, Finish):
                    self._finished(model, chunk, first)
                yield chunk

    def _finished(self, model: str, finish: Finish, first: float | None) -> None:
        self.prompt_tokens.labels(model).inc(finish.usage.prompt_tokens)
        self.completion_tokens.labels(model).inc(finish.usage.completion_tokens)
        decoded = finish.usage.completion_tokens - 1  # the first token's time is the TTFT's
        if first is not None and decoded > 0:
            elapsed = time.perf_counter() - first
            if elapsed > 0:
                self.decode_rate.labels(model).observe(decoded / elapsed)


def route_label(request: web.Request) -> str:
    """The route's pattern (`/v1/models/{model_id}`), never the raw path: bounded labels."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def make_metrics_middleware(metrics: ApiMetrics) -> Callable:
    """Counts every answer by route, model and status. Outermost, so that it sees the status
    the client got (the error middleware inside it has already turned failures into answers)."""

    @web.middleware
    async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            model = request.get(MODEL_KEY, "")
            if status in _UNLABELLED_STATUSES:
                model = ""
            metrics.requests.labels(route_label(request), model, str(status)).inc()

    return metrics_middleware


class NodeCollector(Collector):
    """Gauges read from the node at scrape time."""

    def __init__(self, node: ServingNode) -> None:
        self._node = node

    def collect(self) -> Iterable[GaugeMetricFamily]:
        stats = self._node.stats()
        yield _gauge("salut_queue_depth", "Requests waiting for a batch slot.", stats.queued)
        yield _gauge(
            "salut_requests_in_flight",
            "Generations being served (local and proxied).",
            stats.in_flight,
        )
        loaded = GaugeMetricFamily(
            "salut_model_loaded", "1 for each model loaded on this node.", labels=["model"]
        )
        memory = GaugeMetricFamily(
            "salut_model_memory_bytes", "Memory a loaded model takes.", labels=["model"]
        )
        for model in self._node.models():
            if model.owned_by == "local" and model.loaded:
                loaded.add_metric([model.id], 1)
                memory.add_metric([model.id], model.memory_bytes or 0)
        yield loaded
        yield memory
        yield from _peer_families(self._node)


def _peer_families(node: ServingNode) -> Iterator[GaugeMetricFamily]:
    peers = node.cluster_view().peers
    by_health = GaugeMetricFamily("salut_peers", "Peers by health.", labels=["health"])
    for health in get_args(Health):
        by_health.add_metric([health], sum(1 for p in peers if p.health == health))
    yield by_health
    rtt = GaugeMetricFamily(
        "salut_peer_link_round_trip_seconds",
        "Last measured round trip of the encrypted link to a peer.",
        labels=["peer"],
    )
    for peer in peers:
        if peer.latency_ms is not None:
            rtt.add_metric([peer.name], peer.latency_ms / 1000.0)
    yield rtt


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def metrics_response(metrics: ApiMetrics) -> web.Response:
    # The 0.0.4 text format: every Prometheus version reads it.
    return web.Response(
        body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
    )
