"""Messages from the node side (event bus, logging) to the Textual app.

High-rate sources never post one message per item: the state is updated in place and a single
`NodeChanged` per topic stays pending until the app has handled it (`can_replace` folds any
duplicates that still slip into the queue).
"""

from __future__ import annotations

from typing import Literal

from textual.message import Message

from salut_tui.events import Event
from salut_tui.ui.state import LogEntry

# The parts of the UI state a node event can change; a screen lists those it shows (TOPICS).
Topic = Literal["streams", "models", "peers", "pairing"]


class NodeChanged(Message):
    """Part of the UI state changed; the current screen should redraw that part."""

    def __init__(self, topic: Topic) -> None:
        super().__init__()
        self.topic = topic

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, NodeChanged) and message.topic == self.topic


class NodeNotice(Message):
    """A low-rate event worth a notification (a model loaded, failed or unloaded)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class LogPosted(Message):
    """A log record from any thread, already formatted."""

    def __init__(self, entry: LogEntry) -> None:
        super().__init__()
        self.entry = entry
