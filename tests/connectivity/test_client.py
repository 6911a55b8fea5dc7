"""The REST client against the stand-in platform, in-process (httpx.ASGITransport)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from app.connectivity.client import (
    ClientConfig,
    ControlCenterClient,
    ControlCenterError,
    DeviceSummary,
    RequestEvent,
    TokenBucket,
    retry_after_seconds,
)
from tests.standins.control_center import ControlCenterStandIn

USER, KEY = "voltway", "test-api-key"
T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
FAST = ClientConfig(requests_per_s=0, retry_base_delay_s=1.0)


class FakeClock:
    def __init__(self, at: datetime = T0) -> None:
        self.t = at.timestamp()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Sleeps:
    """Records back-off waits instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def standin(clock: FakeClock) -> ControlCenterStandIn:
    return ControlCenterStandIn(username=USER, api_key=KEY, clock=clock)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def events() -> list[RequestEvent]:
    return []


@pytest.fixture
async def client(
    standin: ControlCenterStandIn, sleeps: Sleeps, events: list[RequestEvent]
) -> AsyncIterator[ControlCenterClient]:
    async with ControlCenterClient(
        "http://cc.test",
        USER,
        KEY,
        config=FAST,
        transport=httpx.ASGITransport(app=standin),
        on_request=events.append,
        sleep=sleeps,
    ) as c:
        yield c


async def collect(
    client: ControlCenterClient,
    since: datetime,
    *,
    status: str | None = None,
    page_size: int | None = None,
) -> list[DeviceSummary]:
    sweep = client.iter_modified_devices(since, status=status, page_size=page_size)
    return [d async for d in sweep]


# -- paging ----------------------------------------------------------------------------------


async def test_sweep_pages_until_last_page(
    client: ControlCenterClient, standin: ControlCenterStandIn
) -> None:
    iccids = standin.add_devices(123)
    devices = await collect(client, LONG_AGO)
    assert [d.iccid for d in devices] == iccids  # oldest change first
    assert devices[0].status == "ACTIVATED"
    assert devices[0].rate_plan == "EV-Charger-1GB"
    assert client.last_sweep.pages == 3
    assert client.last_sweep.complete
    assert not client.last_sweep.shifted
    pages = [r for r in standin.requests if r.startswith("GET /rws/api/v1/devices?")]
    assert [f"pageNumber={n}" in r for n, r in enumerate(pages, 1)] == [True] * 3
    assert all("pageSize=50" in r for r in pages)
    # the `+` of the offset is percent-encoded, or the platform would read a space
    assert "modifiedSince=2000-01-01T00%3A00%3A00%2B00%3A00" in pages[0]


async def test_sweep_of_an_exact_multiple_and_of_nothing(
    client: ControlCenterClient, standin: ControlCenterStandIn
) -> None:
    assert await collect(client, LONG_AGO) == []
    assert client.last_sweep.pages == 1
    standin.add_devices(100)
    assert len(await collect(client, LONG_AGO)) == 100
    assert client.last_sweep.pages == 2


async def test_modified_since_returns_changes_oldest_first(
    client: ControlCenterClient, standin: ControlCenterStandIn, clock: FakeClock
) -> None:
    a, b, c, d = standin.add_devices(4)
    clock.advance(60)
    cutoff = datetime.fromtimestamp(clock(), UTC)
    clock.advance(1)
    standin.set_status(c, "DEACTIVATED")
    clock.advance(1)
    standin.change_imei(a)
    clock.advance(1)
    standin.set_rate_plan(c, "EV-Charger-5GB")
    devices = await collect(client, cutoff)
    assert [(x.iccid, x.status, x.rate_plan) for x in devices] == [
        (a, "ACTIVATED", "EV-Charger-1GB"),
        (c, "DEACTIVATED", "EV-Charger-5GB"),
    ]
    assert {b, d}.isdisjoint(x.iccid for x in devices)


async def test_status_filter(client: ControlCenterClient, standin: ControlCenterStandIn) -> None:
    standin.add_devices(3)
    standin.add_devices(2, status="INVENTORY")
    devices = await collect(client, LONG_AGO, status="INVENTORY")
    assert [d.status for d in devices] == ["INVENTORY", "INVENTORY"]


async def test_device_moved_during_a_sweep_is_not_lost(clock: FakeClock, sleeps: Sleeps) -> None:
    """A device that changes mid-sweep moves to the end and shifts the rest one place
    towards the start: a device not read yet lands on a page already read."""

    async def sweep(passes: int) -> tuple[list[str], list[DeviceSummary], ControlCenterClient]:
        standin = ControlCenterStandIn(username=USER, api_key=KEY, clock=clock)
        iccids = standin.add_devices(10)

        def on_request(event: RequestEvent) -> None:
            if event.operation == "devices" and standin.request_count == 1:
                clock.advance(1)
                standin.set_status(iccids[0], "DEACTIVATED")  # already read on page 1

        c = ControlCenterClient(
            "http://cc.test",
            USER,
            KEY,
            config=ClientConfig(requests_per_s=0, page_size=3, sweep_max_passes=passes),
            transport=httpx.ASGITransport(app=standin),
            on_request=on_request,
            sleep=sleeps,
        )
        async with c:
            return iccids, await collect(c, LONG_AGO), c

    iccids, naive, c1 = await sweep(passes=1)
    assert iccids[3] not in {d.iccid for d in naive}  # the trap: shifted onto page 1
    assert c1.last_sweep.shifted

    iccids, devices, c2 = await sweep(passes=3)
    assert {d.iccid for d in devices} == set(iccids)
    assert (c2.last_sweep.shifted, c2.last_sweep.passes, c2.last_sweep.complete) == (True, 2, True)
    latest = {d.iccid: d.status for d in devices}  # later records win
    assert latest[iccids[0]] == "DEACTIVATED"


async def test_page_size_above_the_platform_cap_is_an_error(
    client: ControlCenterClient, standin: ControlCenterStandIn
) -> None:
    standin.add_devices(1)
    with pytest.raises(ControlCenterError) as info:
        await collect(client, LONG_AGO, page_size=51)
    assert info.value.status == 400
    assert info.value.error_message == "pageSize must be 1..50"
    assert info.value.error_code is not None


async def test_bench_page_size_when_the_stand_in_allows_it(clock: FakeClock) -> None:
    standin = ControlCenterStandIn(username=USER, api_key=KEY, clock=clock, max_page_size=1000)
    standin.add_devices(2500)
    async with ControlCenterClient(
        "http://cc.test/rws/api/v1/",  # a base that already ends in the API path
        USER,
        KEY,
        config=ClientConfig(requests_per_s=0, page_size=1000),
        transport=httpx.ASGITransport(app=standin),
    ) as c:
        assert len(await collect(c, LONG_AGO)) == 2500
        assert c.last_sweep.pages == 3


# -- single devices --------------------------------------------------------------------------


async def test_get_device_session_and_usage(
    client: ControlCenterClient, standin: ControlCenterStandIn, clock: FakeClock
) -> None:
    (iccid,) = standin.add_devices(1)
    device = await client.get_device(iccid)
    assert device.iccid == iccid
    assert device.status == "ACTIVATED"
    assert device.imei == standin.get(iccid).imei
    assert device.date_activated == T0
    assert device.date_updated is not None
    assert device.date_updated.tzinfo is not None
    assert device.account_id == "100020620"

    session = await client.get_session_info(iccid)
    assert (session.session_open, session.never_had_session) == (True, False)
    assert session.date_session_started == T0
    clock.advance(90.5)
    standin.end_session(iccid)
    session = await client.get_session_info(iccid)
    assert not session.session_open
    assert session.date_session_ended == T0 + timedelta(seconds=90.5)

    standin.set_usage(iccid, data_bytes=123_456_789, overage=True)
    usage = await client.get_ctd_usages(iccid)
    assert usage.ctd_data_usage == 123_456_789
    assert usage.overage_limit_reached is True
    assert usage.ctd_sms_usage == 0


async def test_never_had_a_session(
    client: ControlCenterClient, standin: ControlCenterStandIn
) -> None:
    iccid = standin.add_device(session_open=False)
    session = await client.get_session_info(iccid)
    assert (session.session_open, session.never_had_session) == (False, True)


async def test_unknown_device_is_404_with_the_platform_error(
    client: ControlCenterClient, sleeps: Sleeps
) -> None:
    with pytest.raises(ControlCenterError) as info:
        await client.get_device("89445000000009999999")
    err = info.value
    assert (err.status, err.not_found, err.retryable) == (404, True, False)
    assert err.error_message == "Resource not found - ICCID"
    assert err.operation == "device"
    assert sleeps.calls == []


async def test_iccid_is_validated_before_it_reaches_a_path(client: ControlCenterClient) -> None:
    with pytest.raises(ValueError, match="ICCID"):
        await client.get_device("../devices")


# -- auth, errors and back-off ---------------------------------------------------------------


async def test_wrong_api_key_is_401_not_retried(
    standin: ControlCenterStandIn, sleeps: Sleeps
) -> None:
    standin.add_devices(1)
    async with ControlCenterClient(
        "http://cc.test",
        USER,
        "wrong",
        config=FAST,
        transport=httpx.ASGITransport(app=standin),
        sleep=sleeps,
    ) as c:
        with pytest.raises(ControlCenterError) as info:
            await collect(c, LONG_AGO)
    assert (info.value.status, info.value.error_code) == (401, "10000001")
    assert info.value.error_message == "Invalid credentials."
    assert sleeps.calls == []
    assert standin.request_count == 1


async def test_429_is_retried_with_linear_back_off(
    client: ControlCenterClient,
    standin: ControlCenterStandIn,
    sleeps: Sleeps,
    events: list[RequestEvent],
) -> None:
    standin.add_devices(2)
    standin.fail_next(2, 429)
    assert len(await collect(client, LONG_AGO)) == 2
    assert sleeps.calls == [1.0, 2.0]
    assert [(e.status, e.attempt, e.outcome) for e in events] == [
        (429, 1, "retry"),
        (429, 2, "retry"),
        (200, 3, "ok"),
    ]
    assert all(e.operation == "devices" and e.duration_s >= 0 for e in events)


@pytest.mark.parametrize("status", [503, 504])
async def test_503_504_honour_retry_after(
    client: ControlCenterClient, standin: ControlCenterStandIn, sleeps: Sleeps, status: int
) -> None:
    (iccid,) = standin.add_devices(1)
    standin.fail_next(1, status, retry_after="7")
    assert (await client.get_device(iccid)).iccid == iccid
    assert sleeps.calls == [7.0]


async def test_retry_after_is_capped(standin: ControlCenterStandIn, sleeps: Sleeps) -> None:
    (iccid,) = standin.add_devices(1)
    standin.fail_next(1, 429, retry_after="86400")
    async with ControlCenterClient(
        "http://cc.test",
        USER,
        KEY,
        config=ClientConfig(requests_per_s=0, max_retry_after_s=30),
        transport=httpx.ASGITransport(app=standin),
        sleep=sleeps,
    ) as c:
        await c.get_device(iccid)
    assert sleeps.calls == [30.0]


async def test_platform_down_gives_up_after_five_tries(
    client: ControlCenterClient,
    standin: ControlCenterStandIn,
    sleeps: Sleeps,
    events: list[RequestEvent],
) -> None:
    (iccid,) = standin.add_devices(1)
    standin.down = True
    with pytest.raises(ControlCenterError) as info:
        await client.get_session_info(iccid)
    assert (info.value.status, info.value.retryable) == (503, True)
    assert info.value.error_message == "Service unavailable"
    assert standin.request_count == 5
    assert sleeps.calls == [1.0, 2.0, 3.0, 4.0]
    assert [e.outcome for e in events] == ["retry"] * 4 + ["error"]


async def test_500_is_not_retried(sleeps: Sleeps) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="<html>oops</html>")

    async with ControlCenterClient(
        "http://cc.test",
        USER,
        KEY,
        config=FAST,
        transport=httpx.MockTransport(handler),
        sleep=sleeps,
    ) as c:
        with pytest.raises(ControlCenterError) as info:
            await c.get_device("89445000000001000000")
    assert (info.value.status, info.value.error_code) == (500, None)
    assert info.value.error_message == "Internal Server Error"
    assert sleeps.calls == []


async def test_network_errors_are_retried(sleeps: Sleeps, standin: ControlCenterStandIn) -> None:
    (iccid,) = standin.add_devices(1)
    inner = httpx.ASGITransport(app=standin)
    failures = {"left": 2}

    class Flaky(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if failures["left"]:
                failures["left"] -= 1
                raise httpx.ConnectError("refused", request=request)
            return await inner.handle_async_request(request)

    async with ControlCenterClient(
        "http://cc.test", USER, KEY, config=FAST, transport=Flaky(), sleep=sleeps
    ) as c:
        assert (await c.get_device(iccid)).iccid == iccid
        failures["left"] = 99
        with pytest.raises(ControlCenterError) as info:
            await c.get_device(iccid)
    assert (info.value.status, info.value.error_code) == (0, "transport_error")
    assert info.value.retryable


async def test_invalid_response_bodies(sleeps: Sleeps) -> None:
    bodies = iter(
        [
            b"not json",
            b"[]",
            b'{"iccid": "89445000000001000000", "dateSessionStarted": "last tuesday"}',
            b'{"devices": "nope"}',
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=next(bodies))

    async with ControlCenterClient(
        "http://cc.test",
        USER,
        KEY,
        config=FAST,
        transport=httpx.MockTransport(handler),
        sleep=sleeps,
    ) as c:
        for call in (
            c.get_device("89445000000001000000"),
            c.get_ctd_usages("89445000000001000000"),
            c.get_session_info("89445000000001000000"),
        ):
            with pytest.raises(ControlCenterError) as info:
                await call
            assert info.value.error_code == "invalid_response"
        with pytest.raises(ControlCenterError, match="invalid_response"):
            await collect(c, LONG_AGO)


async def test_a_failing_metrics_hook_does_not_break_calls(
    standin: ControlCenterStandIn,
) -> None:
    (iccid,) = standin.add_devices(1)

    def broken(event: RequestEvent) -> None:
        raise RuntimeError("metrics down")

    async with ControlCenterClient(
        "http://cc.test",
        USER,
        KEY,
        config=FAST,
        transport=httpx.ASGITransport(app=standin),
        on_request=broken,
    ) as c:
        assert (await c.get_device(iccid)).iccid == iccid


def test_retry_after_parsing() -> None:
    now = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert retry_after_seconds("soon") is None


# -- pacing ----------------------------------------------------------------------------------


async def test_token_bucket_paces_with_a_fake_clock() -> None:
    now = [0.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(5.0, burst=1, clock=lambda: now[0], sleep=fake_sleep)
    for _ in range(6):
        await bucket.acquire()
    assert now[0] == pytest.approx(1.0)  # 6 requests at 5/s: the first is free
    assert all(w == pytest.approx(0.2) for w in waits)

    burst = TokenBucket(5.0, burst=3, clock=lambda: now[0], sleep=fake_sleep)
    start = now[0]
    for _ in range(3):
        await burst.acquire()
    assert now[0] == start  # saved-up tokens go at once


async def test_client_pacing_in_real_time(standin: ControlCenterStandIn) -> None:
    (iccid,) = standin.add_devices(1)
    async with ControlCenterClient(
        "http://cc.test",
        USER,
        KEY,
        config=ClientConfig(requests_per_s=40.0),
        transport=httpx.ASGITransport(app=standin),
    ) as c:
        started = time.monotonic()
        await asyncio.gather(*(c.get_device(iccid) for _ in range(9)))
        elapsed = time.monotonic() - started
    assert elapsed >= 0.18  # 8 intervals of 25 ms; generous for a noisy machine


# -- the stand-in as a process (demo, bench) ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_until(check: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.05)


ROOT = Path(__file__).resolve().parents[2]


async def test_stand_in_runs_as_a_process() -> None:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.standins.control_center",
        "--port",
        str(port),
        "--devices",
        "2000",
        "--max-page-size",
        "1000",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        await _wait_until(listening, within_s=15)
        async with ControlCenterClient(
            f"http://127.0.0.1:{port}",
            USER,
            KEY,
            config=ClientConfig(requests_per_s=0, page_size=1000, retry_base_delay_s=0.05),
        ) as c:
            devices = await collect(c, LONG_AGO)
            assert len(devices) == 2000
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                await http.post("/_standin/faults", json={"count": 1, "status": 429})
                stats = (await http.get("/_standin/stats")).json()
                assert stats["pending_faults"] == 1
            assert (await c.get_device(devices[0].iccid)).iccid == devices[0].iccid  # after a 429
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
