"""What the UI knows about the node, kept as plain data fed by node events.

The event bus calls us once per generated token on the loop thread, so applying an event is a
dict lookup and a list append; widgets read this state later, at their own refresh rate.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

from salut_tui.events import (
    Event,
    ModelLoaded,
    ModelLoadFailed,
    ModelLoadProgressed,
    ModelLoadStarted,
    ModelUnloaded,
    StreamFinished,
    StreamStarted,
    StreamTokensReceived,
    TransferChanged,
)
from salut_tui.log_levels import LEVELS
from salut_tui.transfers import TransferView
from salut_tui.ui.history import History
from salut_tui.ui.notifications import NoticeHistory, PeerWatch

HISTORY_LIMIT = 200
LOG_LIMIT = 2000


@dataclass(slots=True)
class StreamRecord:
    """One request served by the node, live or finished."""

    request_id: str
    model: str
    client: str
    prompt_preview: str
    served_by: str
    started: float  # time.monotonic() when the UI saw it start
    parts: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    first_token: float | None = None
    finished: StreamFinished | None = None
    ended: float | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def live(self) -> bool:
        return self.finished is None

    @property
    def time_to_first_token(self) -> float | None:
        if self.finished is not None and self.finished.time_to_first_token is not None:
            return self.finished.time_to_first_token
        return None if self.first_token is None else self.first_token - self.started

    def tokens_per_second(self, now: float) -> float | None:
        """The node's figure once finished; while live, the rate seen since the first token."""
        if self.finished is not None:
            return self.finished.tokens_per_second
        if self.first_token is None or self.completion_tokens < 2:
            return None
        elapsed = now - self.first_token
        return self.completion_tokens / elapsed if elapsed > 0 else None

    @property
    def status(self) -> str:
        if self.finished is None:
            return "streaming"
        return self.finished.finish_reason


class StreamBook:
    """Live streams plus a bounded history of finished ones, in start order."""

    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self.records: dict[str, StreamRecord] = {}
        self._limit = limit

    def apply(self, event: Event) -> bool:
        if isinstance(event, StreamTokensReceived):
            record = self.records.get(event.request_id)
            if record is None:
                return False
            if record.first_token is None:
                record.first_token = time.monotonic()
            record.parts.append(event.text)
            record.completion_tokens = event.completion_tokens
            return True
        if isinstance(event, StreamStarted):
            self.records[event.request_id] = StreamRecord(
                event.request_id,
                event.model,
                event.client,
                event.prompt_preview,
                event.served_by,
                time.monotonic(),
            )
            self._trim()
            return True
        if isinstance(event, StreamFinished):
            record = self.records.get(event.request_id)
            if record is None:
                return False
            record.finished = event
            record.completion_tokens = event.completion_tokens
            record.ended = time.monotonic()
            return True
        return False

    def _trim(self) -> None:
        finished = [r.request_id for r in self.records.values() if not r.live]
        for request_id in finished[: max(0, len(self.records) - self._limit)]:
            del self.records[request_id]

    def live_count(self) -> int:
        return sum(1 for r in self.records.values() if r.live)


@dataclass(slots=True)
class LoadState:
    fraction: float = 0.0
    stage: str = ""
    error: str | None = None
    done: bool = False


class ModelLoads:
    """Progress of model loads, by model id, as the engine reports it."""

    def __init__(self) -> None:
        self.loads: dict[str, LoadState] = {}

    def apply(self, event: Event) -> bool:
        if isinstance(event, ModelLoadStarted):
            self.loads[event.model_id] = LoadState(stage="starting")
        elif isinstance(event, ModelLoadProgressed):
            state = self.loads.setdefault(event.model_id, LoadState())
            state.fraction, state.stage = event.fraction, event.stage
        elif isinstance(event, ModelLoaded):
            self.loads[event.model_id] = LoadState(1.0, "loaded", done=True)
        elif isinstance(event, ModelLoadFailed):
            self.loads[event.model_id] = LoadState(0.0, "failed", error=event.message, done=True)
        elif isinstance(event, ModelUnloaded):
            self.loads.pop(event.model_id, None)
        else:
            return False
        return True

    def active(self) -> list[tuple[str, LoadState]]:
        return [(m, s) for m, s in self.loads.items() if not s.done]


@dataclass(frozen=True, slots=True)
class LogEntry:
    created: float
    levelno: int
    levelname: str
    name: str
    message: str


class TransferBook:
    """Pulls and downloads of this node, latest view of each, by transfer id."""

    def __init__(self) -> None:
        self.views: dict[str, TransferView] = {}

    def apply(self, event: Event) -> bool:
        if isinstance(event, TransferChanged):
            self.views[event.view.id] = event.view
            return True
        return False


@dataclass(slots=True)
class LogFilter:
    """What the Logs screen shows: a level and above, one source (a logger and its children),
    and a text the message or source contains (case ignored)."""

    level: str = "INFO"
    source: str | None = None
    text: str = ""

    def matches(self, entry: LogEntry) -> bool:
        if entry.levelno < LEVELS.get(self.level, logging.INFO):
            return False
        if self.source is not None and not (
            entry.name == self.source or entry.name.startswith(self.source + ".")
        ):
            return False
        if self.text:
            needle = self.text.casefold()
            return needle in entry.message.casefold() or needle in entry.name.casefold()
        return True


class UIState:
    """Everything the screens render from."""

    def __init__(self) -> None:
        self.streams = StreamBook()
        self.models = ModelLoads()
        self.transfers = TransferBook()
        self.logs: deque[LogEntry] = deque(maxlen=LOG_LIMIT)
        self.notices = NoticeHistory()  # every toast shown (key n)
        self.peer_watch = PeerWatch()  # cluster events found by comparing peer tables
        self.history = History()  # the Overview's sparklines, sampled once a second

    def logs_at_least(self, level: int) -> list[LogEntry]:
        return [e for e in self.logs if e.levelno >= level]

    def log_sources(self) -> list[str]:
        """The logger names in the buffer, sorted."""
        return sorted({e.name for e in self.logs})
