"""The client address behind load balancers (TRUSTED_PROXIES), and the per-client limits
that use it: public discovery and OTP per IP. Over real TCP (granian), where the peer
address is real."""

from __future__ import annotations

import uuid

import httpx
import pytest

from app.core.clientaddr import resolve
from tests.factories import mobile_numbers
from tests.servers import granian_app

LB = ("10.0.0.0/8", "fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        # no proxy is trusted: the header is anyone's claim
        ("203.0.113.9", ["198.51.100.1"], (), "203.0.113.9"),
        # an untrusted peer cannot speak for someone else
        ("203.0.113.9", ["198.51.100.1"], LB, "203.0.113.9"),
        # our balancer appends the client it saw
        ("10.1.2.3", ["198.51.100.1"], LB, "198.51.100.1"),
        # a client that prepends a fake: the rightmost untrusted hop wins
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1"], LB, "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6", "198.51.100.1"], LB, "198.51.100.1"),
        # two of our proxies in a row
        ("10.1.2.3", ["198.51.100.1, 10.9.9.9"], LB, "198.51.100.1"),
        # IPv6 balancer and client
        ("fd00::1", ["2001:db8::7"], LB, "2001:db8::7"),
        # garbage where an address should be: the last trusted hop is all we know
        ("10.1.2.3", ["not-an-ip"], LB, "10.1.2.3"),
        ("10.1.2.3", ["198.51.100.1, 10.9.9.9, bogus"], LB, "10.1.2.3"),
        # only proxies: the leftmost one
        ("10.1.2.3", ["10.4.4.4"], LB, "10.4.4.4"),
    ],
)
def test_resolve(peer: str, forwarded: list[str], trusted: tuple[str, ...], client: str) -> None:
    assert resolve(peer, forwarded, trusted) == client


async def _status(http: httpx.AsyncClient, method: str, path: str, xff: str, **kw: object) -> int:
    r = await http.request(method, path, headers={"X-Forwarded-For": xff}, **kw)  # type: ignore[arg-type]
    return r.status_code


@pytest.mark.timeout(120)
async def test_limits_follow_the_forwarded_client_only_behind_a_trusted_proxy(
    db_url: str, redis_url: str
) -> None:
    phones = mobile_numbers("DE", 6, start=4200)
    env = {
        "REDIS_NAMESPACE": f"ca{uuid.uuid4().hex[:8]}",
        "DISCOVERY_RATE_PER_S": "0.001",
        "DISCOVERY_BURST": "2",
        "OTP_IP_MAX": "2",
    }
    nearby = "/v1/chargers/nearby?lat=52.5&lon=13.4"
    # Behind our balancer (the test connects from 127.0.0.1, which is trusted here).
    async with (
        granian_app(
            db_url, redis_url, workers=1, env={**env, "TRUSTED_PROXIES": "127.0.0.1/32"}
        ) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        a, b = "198.51.100.1", "198.51.100.2"
        assert [await _status(http, "GET", nearby, a) for _ in range(3)] == [200, 200, 429]
        assert await _status(http, "GET", nearby, b) == 200  # another client: its own bucket
        otp = [
            await _status(http, "POST", "/v1/auth/otp", a, json={"phone": p}) for p in phones[:3]
        ]
        assert otp == [202, 202, 429]
        assert await _status(http, "POST", "/v1/auth/otp", b, json={"phone": phones[3]}) == 202
    # Not behind a proxy we trust: X-Forwarded-For is ignored, so it cannot reset a limit.
    env["REDIS_NAMESPACE"] = f"cb{uuid.uuid4().hex[:8]}"
    async with (
        granian_app(
            db_url, redis_url, workers=1, env={**env, "TRUSTED_PROXIES": "10.0.0.0/8"}
        ) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        codes = [await _status(http, "GET", nearby, f"198.51.100.{i}") for i in range(3)]
        assert codes == [200, 200, 429]
        otp = [
            await _status(http, "POST", "/v1/auth/otp", f"198.51.100.{i}", json={"phone": p})
            for i, p in enumerate(phones[3:6])
        ]
        assert otp == [202, 202, 429]
