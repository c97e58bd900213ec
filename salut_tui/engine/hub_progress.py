"""Byte progress of one Hub download, summed over the files fetched at once.

Salut fetches a model's LFS files itself (`hub_fetch.py`) and leaves the small ones to
`huggingface_hub.snapshot_download`, whose progress bars it reads through a tqdm class that draws
nothing. Both feed one `ByteTally`, which reports (bytes of the model on disk, bytes in all, bytes
fetched in this run): resumed bytes count as on disk, not as fetched, so a rate and an ETA
computed from the fetched bytes stay true after a resume.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import Any

from tqdm.std import tqdm as std_tqdm

Progress = Callable[[float, str], None]
# (bytes of the model on disk, bytes in all, bytes fetched in this run).
ByteProgress = Callable[[int, int, int], None]

REPORT_EVERY = 0.1  # seconds between reports while bytes flow (each one is an event for the UI)


class ByteTally:
    """The download's byte counts, fed from several threads; reports are throttled."""

    def __init__(
        self, total: int, on_disk: int, on_bytes: ByteProgress | None = None,
        progress: Progress | None = None,
    ) -> None:  # fmt: skip
        self._lock = threading.Lock()
        self.total, self.done, self.received = total, on_disk, 0
        self._on_bytes, self._progress = on_bytes, progress
        self._hub_base: tuple[int, int] | None = None
        self._best = 0.0  # the fraction only goes forward, even when bytes are thrown away
        self._last = 0.0

    def fetched(self, n: int) -> None:
        """`n` bytes arrived and were written."""
        with self._lock:
            self.done += n
            self.received += n
            self._report()

    def adjust(self, n: int) -> None:
        """`n` bytes appeared on disk without travelling (or, negative, were thrown away)."""
        with self._lock:
            self.done += n
            self._report(force=True)

    def hub(self, done: int, total: int, received: int) -> None:
        """huggingface_hub's own figures for the files it fetched (counted from its start; its
        total grows as it starts each file)."""
        with self._lock:
            if self._hub_base is None:
                self._hub_base = (self.done, self.received)
            self.done = self._hub_base[0] + done
            self.total = max(self.total, self._hub_base[0] + total)
            self.received = self._hub_base[1] + received
            self._report()

    def finish(self) -> None:
        with self._lock:
            self.total = max(self.total, self.done)
            self.done = self.total
            self._report(force=True)

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < REPORT_EVERY and self.done < self.total:
            return
        self._last = now
        done, total = max(0, self.done), max(self.total, self.done)
        if self._on_bytes is not None:
            self._on_bytes(done, total, self.received)
        fraction = done / total if total else 1.0
        if self._progress is not None and fraction > self._best:
            self._best = fraction
            self._progress(fraction, f"downloaded {done / 1e6:.1f} of {total / 1e6:.1f} MB")


def hub_bar_class(tally: ByteTally) -> type[std_tqdm]:
    """A tqdm class for `snapshot_download` that reports its byte bars to `tally`.

    It derives from plain tqdm, not huggingface_hub's subclass, so the hub does not disable it
    (it disables its own bars when stderr is not a terminal, e.g. under the UI); the text it would
    draw goes to an in-memory sink.
    """
    state = {"done": 0, "total": 0, "received": 0}

    class _ReportingBar(std_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            # The snapshot's aggregate bars: bytes on disk ("Reconstructing") of the files the hub
            # fetched itself, and bytes fetched ("Downloading bytes").
            desc = str(self.desc)
            if self.unit == "B" and desc.startswith(("Downloading bytes", "Recon")):
                if desc.startswith("Downloading"):
                    state["received"] = int(self.n)
                else:
                    state["done"], state["total"] = int(self.n), int(self.total or 0)
                tally.hub(state["done"], state["total"], state["received"])
            return shown

    return _ReportingBar
