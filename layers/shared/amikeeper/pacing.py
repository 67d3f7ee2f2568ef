"""A token bucket that keeps retention's deletions inside EC2's request-rate bucket for them.

EC2 meters mutating calls per account and region with token buckets; the one DeregisterImage and
DeleteSnapshot draw from holds a burst of 100 and refills 5 a second. Spending our own tokens first
means a big cleanup slows itself down instead of being throttled and stealing the budget the worker's
CreateImage calls need. Clock and sleep are injected so tests run without waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

EC2_DELETE_BURST = 100.0
EC2_DELETE_REFILL_PER_SECOND = 5.0


class InvalidBucketError(ValueError):
    """A bucket that could never hand out a token (capacity or refill rate not positive)."""


@dataclass
class TokenBucket:
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    capacity: float = EC2_DELETE_BURST
    refill_per_second: float = EC2_DELETE_REFILL_PER_SECOND
    _tokens: float = field(init=False)
    _updated: float = field(init=False)
    waited_seconds: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise InvalidBucketError(f"capacity {self.capacity} must be at least 1 token")
        if self.refill_per_second <= 0:
            raise InvalidBucketError(f"refill rate {self.refill_per_second}/s must be above zero")
        self._tokens = self.capacity
        self._updated = self.clock()

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def acquire(self) -> None:
        """Take one token, sleeping first for as long as the refill needs to produce it."""
        self._refill()
        if self._tokens < 1:
            wait = (1 - self._tokens) / self.refill_per_second
            self.sleep(wait)
            self.waited_seconds += wait
            self._refill()
            # A sleep may come back early (or a fake clock may not move): the token is owed either way,
            # so the balance goes negative and the next caller waits for it.
        self._tokens -= 1

    def _refill(self) -> None:
        now = self.clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.refill_per_second)
        self._updated = now
