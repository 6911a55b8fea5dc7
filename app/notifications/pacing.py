"""Per-sender pacing: at most N messages a second from each From number (INTEGRATIONS.md
§4: ~1/s for a long code, ~100/s for a short code), shared by every worker process.

Each send reserves the next free slot of its sender in Redis (one Lua script, so workers
never hand out the same slot; the time is Redis's own, so their clocks need not agree) and
gets back how long to wait for it. The job waits short gaps in place and defers longer ones
(`Retry(defer=…)`, the slot remembered on the message as `send_after`): messages queue,
none is dropped. A login code (`priority`) takes the next slot ahead of queued alerts and
pushes the queue back by one interval.
"""

from __future__ import annotations

from typing import Any, Final

from app.core.settings import Settings

# KEYS[1] = the sender's key; ARGV = interval (s), priority ('1'/'0')
# returns the wait in microseconds until the reserved slot (0 = now)
_RESERVE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot
if ARGV[2] == '1' then
  slot = now
  free = math.max(free, now) + interval
else
  slot = math.max(free, now)
  free = slot + interval
end
redis.call('SET', KEYS[1], string.format('%.0f', free), 'PX',
           math.floor((free - now) / 1000) + 60000)
return slot - now
"""


def rate_for(settings: Settings, sender: str) -> float:
    """Messages per second allowed from `sender` (0 = unpaced): `SMS_SENDER_RATES`
    (`+4915…=1,MG…=100`) names senders, `SMS_RATE_PER_SENDER` is the default."""
    for item in settings.sms_sender_rates.split(","):
        name, _, rate = item.partition("=")
        if name.strip() == sender and rate.strip():
            return max(0.0, float(rate))
    return max(0.0, settings.sms_rate_per_sender)


def pace_key(settings: Settings, sender: str) -> str:
    return f"{settings.redis_namespace}:sms:pace:{sender}"


async def reserve(redis: Any, settings: Settings, sender: str, *, priority: bool = False) -> float:
    """Reserve the sender's next slot; returns the seconds to wait for it (0 = send now)."""
    rate = rate_for(settings, sender)
    if rate <= 0:
        return 0.0
    interval_us = 1_000_000.0 / rate
    wait_us = await redis.eval(
        _RESERVE, 1, pace_key(settings, sender), f"{interval_us:.0f}", "1" if priority else "0"
    )
    return max(0.0, int(wait_us) / 1_000_000.0)
