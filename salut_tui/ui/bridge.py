"""Node events and log records into the UI: update the state, then post at most one message
(none at all for tokens: Streams and stream views read them on a 4 Hz timer).

`EventBus` calls `on_event` synchronously on the loop thread, once per generated token, while
the engine is waiting to hand over the next one. So the callback does a constant amount of work
and never touches a widget; the screens redraw from `UIState` when the app handles the message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from textual.app import App

from salut_tui.events import (
    Event,
    KeepAliveChanged,
    ModelLoaded,
    ModelLoadFailed,
    ModelUnloaded,
    PairingChanged,
    PeersChanged,
    ShardsChanged,
    StreamTokensReceived,
)
from salut_tui.log_levels import NODE_LOGGERS, LoggerLevels
from salut_tui.ui.messages import LogPosted, NodeChanged, NodeNotice, Topic
from salut_tui.ui.state import LogEntry, UIState


class EventBridge:
    """Subscribed to `node.events` for the app's lifetime."""

    def __init__(self, app: App, state: UIState) -> None:
        self._app = app
        self._state = state
        self._pending: set[Topic] = set()

    def on_event(self, event: Event) -> None:
        if isinstance(event, StreamTokensReceived):
            # The hot path: only buffer. Screens showing live text poll the state on a timer.
            self._state.streams.apply(event)
        elif self._state.streams.apply(event):
            self._changed("streams")
        elif self._state.models.apply(event):
            self._changed("models")
            if isinstance(event, ModelLoaded | ModelLoadFailed | ModelUnloaded):
                self._app.post_message(NodeNotice(event))
        elif self._state.transfers.apply(event) or isinstance(event, KeepAliveChanged):
            self._changed("models")
        elif isinstance(event, PeersChanged):
            self._changed("peers")
        elif isinstance(event, ShardsChanged):  # a sharded model is a model and a peer matter
            self._changed("models")
            self._changed("peers")
        elif isinstance(event, PairingChanged):
            self._changed("pairing")

    def _changed(self, topic: Topic) -> None:
        if topic not in self._pending:
            self._pending.add(topic)
            self._app.post_message(NodeChanged(topic))

    def handled(self, topic: Topic) -> None:
        """The app has read the state for this topic; the next change posts again."""
        self._pending.discard(topic)


class LogRouting:
    """Puts a `UILogHandler` on the root logger and sets the level of Salut's loggers (and the
    API access log) for as long as the app runs; `remove` puts the old levels back."""

    def __init__(self, post: Callable[[LogPosted], object]) -> None:
        self.handler = UILogHandler(post)
        self._levels = LoggerLevels(NODE_LOGGERS)
        self.level = logging.INFO

    def install(self, level: int) -> None:
        logging.getLogger().addHandler(self.handler)
        self.set_level(level)

    def set_level(self, level: int) -> None:
        """Records below `level` are not even created from now on (DEBUG costs nothing else)."""
        self.level = level
        self._levels.set(level)

    def remove(self) -> None:
        logging.getLogger().removeHandler(self.handler)
        self._levels.restore()


class UILogHandler(logging.Handler):
    """Forwards log records to the app; `post_message` is safe from the engine thread."""

    def __init__(self, post: Callable[[LogPosted], object], level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self._post = post

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                # One line for the cause; a traceback does not belong on the screen.
                exc = record.exc_info[1]
                message = f"{message}: {type(exc).__name__}: {exc}"
            entry = LogEntry(record.created, record.levelno, record.levelname, record.name, message)
            self._post(LogPosted(entry))
        except Exception:
            self.handleError(record)
