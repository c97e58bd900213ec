"""Rate and time left of a transfer, and the text of a progress bar (pure)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

RATE_WINDOW = 5.0  # seconds the rate averages over


@dataclass(frozen=True, slots=True)
class Snapshot:
    done: int
    total: int
    rate: float  # bytes per second over the last RATE_WINDOW
    eta: float | None  # seconds left at that rate; None while unknown

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)


class RateMeter:
    """Bytes done over time. Feed it (time, total done so far); read the current snapshot."""

    def __init__(self, total: int, done: int = 0, now: float = 0.0) -> None:
        self.total, self.done = total, done
        self._points: deque[tuple[float, int]] = deque([(now, done)])

    def update(self, done: int, now: float) -> Snapshot:
        self.done = done
        self._points.append((now, done))
        while len(self._points) > 2 and now - self._points[1][0] >= RATE_WINDOW:
            self._points.popleft()
        return self.snapshot(now)

    def snapshot(self, now: float) -> Snapshot:
        t0, d0 = self._points[0]
        elapsed = now - t0
        rate = (self.done - d0) / elapsed if elapsed > 0 else 0.0
        left = max(0, self.total - self.done)
        eta = left / rate if rate > 0 else (0.0 if left == 0 else None)
        return Snapshot(self.done, self.total, rate, eta)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def bar_line(label: str, snap: Snapshot, width: int = 30) -> str:
    """`label [#####.....]  42%  1.2 of 2.9 GB  180.3 MB/s  ETA 00:09`."""
    filled = int(snap.fraction * width)
    bar = "#" * filled + "." * (width - filled)
    return (
        f"{label} [{bar}] {snap.fraction * 100:3.0f}%  {human_bytes(snap.done)} of "
        f"{human_bytes(snap.total)}  {human_bytes(snap.rate)}/s  ETA {human_duration(snap.eta)}"
    )
