"""Back-off after failed pairing attempts, kept per source address.

Keyed on where attempts come from, so one LAN host's failures slow that host down and nobody
else: never the owner, who makes codes through the local control path and is not limited at
all. Each code allows one real guess, so brute force is bounded by the codes the owner makes;
the back-off only stops one source from keeping the host busy with abandoned exchanges.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


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


class SourceLimiter:
    """One `FailureLimiter` per source, forgetting sources quiet for `forget_after` seconds and
    keeping at most `max_sources` (the oldest go first), so memory stays bounded."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        cap: float = 60.0,
        forget_after: float = 600.0,
        max_sources: int = 1024,
    ) -> None:
        self._clock = clock
        self._cap, self._forget_after, self._max = cap, forget_after, max_sources
        self._by_source: OrderedDict[str, FailureLimiter] = OrderedDict()

    def record_failure(self, source: str) -> None:
        self._prune()
        limiter = self._by_source.pop(source, None) or FailureLimiter(self._cap)
        limiter.record_failure(self._clock())
        self._by_source[source] = limiter  # most recent last
        while len(self._by_source) > self._max:
            self._by_source.popitem(last=False)

    def record_success(self, source: str) -> None:
        self._by_source.pop(source, None)

    def retry_after(self, source: str) -> float:
        limiter = self._by_source.get(source)
        return 0.0 if limiter is None else limiter.retry_after(self._clock())

    def failures(self) -> int:
        """Failed attempts by every source still remembered."""
        self._prune()
        return sum(limiter.failures for limiter in self._by_source.values())

    def longest_wait(self) -> float:
        now = self._clock()
        return max((lim.retry_after(now) for lim in self._by_source.values()), default=0.0)

    def _prune(self) -> None:
        now = self._clock()
        for source, limiter in list(self._by_source.items()):
            if now - limiter.last_failure > self._forget_after:
                del self._by_source[source]
