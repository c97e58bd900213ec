"""Back-off after failed pairing attempts, so a code cannot be brute-forced by retrying."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class FailureLimiter:
    """After the second consecutive failure, wait 1 s, then 2, 4... up to `cap` seconds.

    The first failure is free: a person mistyping once should simply get a new code.
    A success clears the count.
    """

    cap: float = 60.0
    failures: int = 0
    last_failure: float = 0.0

    def record_failure(self, now: float | None = None) -> None:
        self.failures += 1
        self.last_failure = time.monotonic() if now is None else now

    def record_success(self) -> None:
        self.failures = 0

    def retry_after(self, now: float | None = None) -> float:
        if self.failures < 2:
            return 0.0
        wait = min(self.cap, 2.0 ** (self.failures - 2))
        now = time.monotonic() if now is None else now
        return max(0.0, self.last_failure + wait - now)
