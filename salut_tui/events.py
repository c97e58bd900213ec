"""Node events: what happened inside a node, for whoever watches (the TUI, logs, tests).

Events are past-tense facts published on the asyncio loop. Subscribers are plain callables
called synchronously in publish order; they must be cheap (the TUI posts a Message and returns)
because stream events are published once per token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    pass


@dataclass(frozen=True, slots=True)
class ModelLoadStarted(Event):
    model_id: str


# Stage prefix of the progress of the bundled default model's one-time conversion (first start).
CONVERTING = "converting: "
# Stage prefix of a load's memory check (what the model needs, what is free): the first stage.
MEMORY_CHECK = "memory check: "


@dataclass(frozen=True, slots=True)
class ModelLoadProgressed(Event):
    model_id: str
    fraction: float  # 0.0 .. 1.0 of the current stage group (conversion, then loading)
    stage: str = ""


@dataclass(frozen=True, slots=True)
class ModelLoaded(Event):
    model_id: str
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class ModelLoadFailed(Event):
    model_id: str
    message: str


@dataclass(frozen=True, slots=True)
class ModelUnloaded(Event):
    model_id: str


@dataclass(frozen=True, slots=True)
class StreamStarted(Event):
    request_id: str
    model: str
    client: str
    prompt_preview: str
    started_at: float
    served_by: str = "local"  # "local" or the peer's name when proxied


@dataclass(frozen=True, slots=True)
class StreamTokensReceived(Event):
    request_id: str
    text: str
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class StreamFinished(Event):
    request_id: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token: float | None
    tokens_per_second: float | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PeersChanged(Event):
    """The peer table changed (seen, lost, paired, unpaired, health); read the registry."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class ShardsChanged(Event):
    """A sharded instance on this node changed state (starting, ready, failed, stopped)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class PairingChanged(Event):
    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TransferChanged(Event):
    """A pull or download started, moved on, finished or failed (`view` is a TransferView)."""

    view: Any


@dataclass(frozen=True, slots=True)
class KeepAliveChanged(Event):
    """A model's idle deadline moved (used, loaded with a new keep-alive) or it was unloaded."""

    model_id: str


@dataclass(slots=True)
class EventBus:
    _subscribers: list[Callable[[Event], Any]] = field(default_factory=list)

    def subscribe(self, callback: Callable[[Event], Any]) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def publish(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must never break generation
                log.exception("event subscriber failed on %s", type(event).__name__)
