"""Per-client token buckets kept in process memory, for hot public routes (discovery)
where a Redis round trip per request would cost more than the request itself. With N
worker processes a client gets up to N× the rate; the limit is set per process."""

from __future__ import annotations

import time


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: float, max_clients: int = 100_000) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str, now: float | None = None) -> float:
        """0 when allowed; otherwise the seconds until a token is available."""
        if self.rate <= 0:
            return 0.0
        t = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client, (self.burst, t))
        tokens = min(self.burst, tokens + (t - last) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self.max_clients and client not in self._buckets:
                self._buckets.clear()  # bounded memory; forgetting is the safe direction
            self._buckets[client] = (tokens - 1.0, t)
            return 0.0
        self._buckets[client] = (tokens, t)
        return (1.0 - tokens) / self.rate
