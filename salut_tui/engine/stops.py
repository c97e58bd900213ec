"""Stop strings on streamed text: never emit a stop string, even when it spans several tokens.

Pure text logic, no MLX. Text arrives piece by piece (one detokenized segment per token); the
matcher emits what can no longer be the start of a stop string and holds back the tail that still
could be. When a stop string completes, everything before it is emitted and the rest is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StopStep:
    """What one piece of text produced: `text` is safe to send; `stopped` ends the stream."""

    text: str
    stopped: bool = False


def normalize_stops(stop: str | Iterable[str] | None) -> tuple[str, ...]:
    """The API's `stop` (a string, a list or nothing) as a tuple of non-empty strings."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    return tuple(s for s in stop if s)


class StopMatcher:
    """Holds back text that could be the start of a stop string.

    `feed` returns the text that is safe to emit now; `flush` returns what was held back when the
    stream ends for another reason (length, end of sequence), since it was not a stop after all.
    """

    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._pending = ""
        self.stopped = False

    @property
    def pending(self) -> str:
        return self._pending

    def feed(self, text: str) -> StopStep:
        if self.stopped:
            return StopStep("", True)
        if not self._stops:
            return StopStep(text)
        buffer = self._pending + text
        cut = self._first_stop(buffer)
        if cut is not None:
            self._pending = ""
            self.stopped = True
            return StopStep(buffer[:cut], True)
        keep = self._held_tail_length(buffer)
        self._pending = buffer[len(buffer) - keep :] if keep else ""
        return StopStep(buffer[: len(buffer) - keep])

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return "" if self.stopped else text

    def _first_stop(self, buffer: str) -> int | None:
        """Index where the earliest stop string starts in `buffer`, if any."""
        found = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        return min(found) if found else None

    def _held_tail_length(self, buffer: str) -> int:
        """Length of the longest suffix of `buffer` that is a proper prefix of a stop string."""
        longest = min(len(buffer), self._longest - 1)
        for size in range(longest, 0, -1):
            tail = buffer[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0
