"""Rate limits: one token bucket per API key, or per client address when no keys are set.

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens per second; a request takes
one. So a client may send ``burst`` requests at once, then ``rate`` per second for as long as
it likes; at time ``t`` after its last request a bucket that held ``b`` tokens holds

    min(burst, b + rate · t)

A request that finds less than one token is refused (HTTP 429) and takes nothing; its
``Retry-After`` is the time until the bucket holds one token again, ``(1 - b) / rate``,
rounded up to whole seconds as the header requires.

Each bucket is the traffic of one key alone, so one key's requests never limit another's.
Each server process keeps its own buckets: with ``--workers N`` a client whose connections
reach every worker may get up to N times the rate (docs/serving.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable

# more buckets than this, and the full ones (as good as new) are forgotten
MAX_BUCKETS = 10_000


class RateLimiter:
    """Token buckets of ``rate`` tokens per second holding at most ``burst`` (default
    ``rate``, at least one) tokens each, one per key. ``clock`` gives seconds (monotonic)."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        burst = max(rate, 1.0) if burst is None else burst
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate_limit must be a positive number of requests per second, "
                             f"got {rate!r}")
        if not (burst >= 1 and math.isfinite(burst)):
            raise ValueError(f"rate_limit_burst must be a number >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at time)
        self._forget_above = MAX_BUCKETS

    def take(self, key: Hashable) -> float:
        """Take a token from ``key``'s bucket: 0.0 when one was there, else the seconds until
        one will be (and nothing is taken)."""
        now = self._clock()
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self._forget_above:
            self._forget_full(now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have filled up again: a new bucket is just as full. Those
        still in use stay, and the bound doubles until it is twice their number."""
        self._buckets = {key: (tokens, then) for key, (tokens, then) in self._buckets.items()
                         if tokens + (now - then) * self.rate < self.burst}
        self._forget_above = max(MAX_BUCKETS, 2 * len(self._buckets))


def retry_after(seconds: float) -> bytes:
    """A ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds))).encode("ascii")
