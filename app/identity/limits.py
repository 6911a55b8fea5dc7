"""SMS-code send limits in Redis, checked and counted in one atomic Lua script.

Against SMS pumping (attackers making us text premium ranges at our cost) every code sent
must pass all of: a resend cool-down per number, a count per number, per client address
(IPv6 per /64, which one subscriber usually holds whole), per country calling code, and
a global hourly budget. Windows start at their first send and last `window` seconds.
The script counts a send only when every limit passes, so a refused request costs no
budget, and since Redis runs scripts one at a time the budget holds under any
concurrency, across every API process. When Redis cannot answer, sending fails closed.
"""

from __future__ import annotations

import ipaddress
from typing import Final

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.errors import RateLimited, ServiceUnavailable
from app.core.redis import key
from app.core.settings import Settings

# KEYS[1] = cool-down flag; KEYS[2..] = counters.
# ARGV[1] = cool-down ms; then for counter KEYS[i]: ARGV[2i-2] = max, ARGV[2i-1] = window ms.
# Returns {0, 0} when the send may go (and counted), else {index of the key, ms to wait}.
_SCRIPT: Final = """
if tonumber(ARGV[1]) > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, redis.call('PTTL', KEYS[1])}
end
for i = 2, #KEYS do
  local max = tonumber(ARGV[2 * i - 2])
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used >= max then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
      ttl = tonumber(ARGV[2 * i - 1])
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
    return {i, ttl}
  end
end
for i = 2, #KEYS do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i - 1])
  end
end
if tonumber(ARGV[1]) > 0 then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return {0, 0}
"""

# What a client is told for each refused key (index 1 = cool-down, then the counters).
_REASONS: Final = {
    1: "a code was just sent to this number; wait before asking again",
    2: "too many codes requested for this number",
    3: "too many codes requested from this address",
    4: "too many codes requested for this country right now",
    5: "login codes are temporarily limited; try again later",
}


class SendLimits(msgspec.Struct, frozen=True):
    """The limits one send is checked against (from Settings)."""

    resend_after_s: int
    phone: tuple[int, int]  # (max sends, window seconds)
    ip: tuple[int, int]
    prefix: tuple[int, int]
    budget: tuple[int, int]

    @classmethod
    def from_settings(cls, settings: Settings) -> SendLimits:
        return cls(
            resend_after_s=settings.otp_resend_after_s,
            phone=(settings.otp_phone_max, settings.otp_phone_window_s),
            ip=(settings.otp_ip_max, settings.otp_ip_window_s),
            prefix=(settings.otp_prefix_max, settings.otp_prefix_window_s),
            budget=(settings.sms_hourly_budget, 3600),
        )


def ip_bucket(host: str) -> str:
    """The unit an address is limited by: IPv4 as is, IPv6 by its /64."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


async def check_and_count(
    redis: Redis,
    settings: Settings,
    *,
    phone: str,
    client_ip: str,
    country_code: int,
    limits: SendLimits | None = None,
) -> None:
    """Count one code send against every limit, or raise RateLimited (429, Retry-After)
    without counting; ServiceUnavailable (503) when Redis cannot answer."""
    lim = limits or SendLimits.from_settings(settings)
    keys = [
        key(settings, "otp", "cooldown", phone),
        key(settings, "otp", "phone", phone),
        key(settings, "otp", "ip", ip_bucket(client_ip)),
        key(settings, "otp", "cc", str(country_code)),
        key(settings, "sms", "budget"),
    ]
    args: list[str] = [str(max(0, lim.resend_after_s) * 1000)]
    for limit, window_s in (lim.phone, lim.ip, lim.prefix, lim.budget):
        args += [str(limit), str(max(1, window_s) * 1000)]
    try:
        result = await redis.eval(_SCRIPT, len(keys), *keys, *args)  # type: ignore[misc]
    except (RedisError, OSError, TimeoutError) as exc:
        raise ServiceUnavailable(
            "login codes cannot be sent right now; try again shortly",
            headers={"Retry-After": "5"},
        ) from exc
    index, wait_ms = int(result[0]), int(result[1])
    if index:
        raise RateLimited(_REASONS[index], retry_after_s=max(1, -(-wait_ms // 1000)))
