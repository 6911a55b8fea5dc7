"""Async client for the connectivity platform's REST API (`{base}/rws/api/v1`).

HTTP Basic `username:apiKey`; requests are paced by a token bucket (no rate limit is
published, so ≤ 5/s by default); 429/503/504 and network failures are retried with a
linear back-off (the vendor's own sample waits +10 s per try, up to 5 tries), honouring
`Retry-After`. Failures surface as `ControlCenterError` carrying the platform's
`errorCode`/`errorMessage`. Each HTTP attempt is reported to an optional hook for metrics.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import httpx
import msgspec

from app.connectivity.dates import format_query_datetime, parse_optional_datetime

log = logging.getLogger("app.connectivity.client")

API_PATH: Final = "/rws/api/v1"
RETRY_STATUSES: Final = frozenset({429, 503, 504})
_ICCID = re.compile(r"^[0-9A-Za-z]{6,32}$")

T = TypeVar("T")


class ClientConfig(msgspec.Struct, frozen=True, kw_only=True):
    requests_per_s: float = 5.0
    """Pace of requests from this client (retries included); 0 turns pacing off."""
    burst: int = 1
    """Requests that may go at once after an idle spell."""
    timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    max_tries: int = 5
    """Attempts per request, the first included."""
    retry_base_delay_s: float = 10.0
    """Wait before retry n is n × this, unless the platform sends Retry-After."""
    max_retry_after_s: float = 120.0
    """Upper bound on any wait, Retry-After included."""
    page_size: int = 50
    """Devices per page in a sweep; the platform's documented maximum is 50."""
    sweep_max_passes: int = 3
    """A sweep re-reads from page 1 (up to this many passes in all) when it saw a device
    twice: that device moved to the end while the sweep ran, which shifts a device it had
    not read yet onto a page it had already read."""
    max_pages: int = 1_000_000
    """Safety stop for a sweep against a platform whose `lastPage` never comes."""
    user_agent: str = "voltway-connectivity/1"


class ControlCenterError(Exception):
    """A failed call. `status` is the HTTP status, or 0 when no answer came (network error,
    timeout). `error_code`/`error_message` are the platform's own when it sent them."""

    def __init__(
        self,
        status: int,
        error_code: str | None,
        error_message: str | None,
        *,
        operation: str = "",
    ) -> None:
        super().__init__(f"{operation or 'request'} failed: {status} {error_code} {error_message}")
        self.status = status
        self.error_code = error_code
        self.error_message = error_message
        self.operation = operation

    @property
    def retryable(self) -> bool:
        """Worth trying again later (rate limited, unavailable, no answer)."""
        return self.status == 0 or self.status in RETRY_STATUSES

    @property
    def not_found(self) -> bool:
        return self.status == 404


class RequestEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One HTTP attempt, for metrics."""

    operation: Literal["devices", "device", "session_info", "ctd_usages"]
    status: int
    """HTTP status, 0 when no answer came."""
    duration_s: float
    attempt: int
    outcome: Literal["ok", "retry", "error"]


RequestHook = Callable[[RequestEvent], None]


class DeviceSummary(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A device as listed by `GET /devices` (search by `modifiedSince`)."""

    iccid: str
    status: str | None = None
    rate_plan: str | None = None
    communication_plan: str | None = None


class _DevicePage(msgspec.Struct, kw_only=True, rename="camel"):
    devices: list[DeviceSummary] = []
    page_number: int | None = None
    last_page: bool = True


class Device(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """`GET /devices/{iccid}`: the SIM's status and the IMEI of the device it is in."""

    iccid: str
    imsi: str | None = None
    msisdn: str | None = None
    imei: str | None = None
    status: str | None = None
    rate_plan: str | None = None
    communication_plan: str | None = None
    customer: str | None = None
    end_consumer_id: str | None = None
    date_activated: datetime | None = None
    date_updated: datetime | None = None
    date_shipped: datetime | None = None
    account_id: str | int | None = None
    fixed_ip_address: str | None = msgspec.field(default=None, name="fixedIPAddress")
    fixed_ipv6_address: str | None = msgspec.field(default=None, name="fixedIpv6Address")
    device_id: str | None = msgspec.field(default=None, name="deviceID")
    modem_id: str | None = msgspec.field(default=None, name="modemID")


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """`GET /devices/{iccid}/sessionInfo`: the current or most recent data session."""

    iccid: str
    ip_address: str | None = None
    ipv6_address: str | None = None
    date_session_started: datetime | None = None
    date_session_ended: datetime | None = None

    @property
    def session_open(self) -> bool:
        """In a data session now (started and not ended)."""
        return self.date_session_started is not None and self.date_session_ended is None

    @property
    def never_had_session(self) -> bool:
        return self.date_session_started is None and self.date_session_ended is None


class CtdUsage(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """`GET /devices/{iccid}/ctdUsages`: cycle-to-date usage."""

    iccid: str
    imsi: str | None = None
    msisdn: str | None = None
    imei: str | None = None
    status: str | None = None
    rate_plan: str | None = None
    communication_plan: str | None = None
    ctd_data_usage: int | None = None
    """Bytes this billing cycle."""
    ctd_sms_usage: int | None = msgspec.field(default=None, name="ctdSMSUsage")
    ctd_voice_usage: int | None = None
    ctd_session_count: int | None = None
    overage_limit_reached: bool | None = None
    overage_limit_override: str | None = None


class SweepStats(msgspec.Struct, kw_only=True):
    """What the last `iter_modified_devices` did."""

    pages: int = 0
    devices: int = 0
    """Records yielded (a device that changed during the sweep may be yielded twice)."""
    passes: int = 0
    shifted: bool = False
    """A device was seen twice, so a re-read pass was needed (or would have been)."""
    complete: bool = False


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; one token per request."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = float(max(1, burst))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = self._clock()
                elapsed = max(0.0, now - self._stamp)
                self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
                self._stamp = now
                # A hair of tolerance: float rounding must not leave a waiter short forever.
                if self._tokens >= 1.0 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return
                await self._sleep((1.0 - self._tokens) / self.rate)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _check_iccid(iccid: str) -> str:
    if not _ICCID.fullmatch(iccid):
        raise ValueError("not an ICCID")
    return iccid


def _base_url(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith(API_PATH) else base + API_PATH


class ControlCenterClient:
    """One client per credential set; safe to share between tasks (pacing is per client)."""

    def __init__(
        self,
        base_url: str,
        username: str,
        api_key: str,
        *,
        config: ClientConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_request: RequestHook | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config or ClientConfig()
        self._on_request = on_request
        self._sleep = sleep
        self._bucket = TokenBucket(self.config.requests_per_s, self.config.burst)
        self._http = httpx.AsyncClient(
            base_url=_base_url(base_url),
            auth=httpx.BasicAuth(username, api_key),
            timeout=httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s),
            headers={"Accept": "application/json", "User-Agent": self.config.user_agent},
            transport=transport,
            follow_redirects=False,
        )
        self.last_sweep = SweepStats()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- calls ---------------------------------------------------------------------------

    async def iter_modified_devices(
        self, since: datetime, *, status: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[DeviceSummary]:
        """Every device modified at or after `since`, oldest change first, page by page
        until `lastPage`. A device that changes during the sweep is yielded again with its
        newer state. Record the time *before* calling and use it (minus a margin for clock
        skew) as the next `since`: the listing carries no modification date to resume from.
        """
        size = page_size or self.config.page_size
        stats = SweepStats()
        self.last_sweep = stats
        yielded: dict[str, tuple[str | None, str | None, str | None]] = {}
        params: dict[str, str | int] = {"modifiedSince": format_query_datetime(since)}
        if status is not None:
            params["status"] = status
        for pass_no in range(1, max(1, self.config.sweep_max_passes) + 1):
            stats.passes = pass_no
            seen_this_pass: set[str] = set()
            shifted = False
            page_number = 1
            while True:
                if stats.pages >= self.config.max_pages:
                    raise ControlCenterError(
                        0, "too_many_pages", "lastPage never came", operation="devices"
                    )
                body = await self._get(
                    "devices",
                    "/devices",
                    {**params, "pageSize": size, "pageNumber": page_number},
                )
                page = _decode(body, _DevicePage, "devices")
                stats.pages += 1
                for device in page.devices:
                    if device.iccid in seen_this_pass:
                        shifted = True
                    seen_this_pass.add(device.iccid)
                    state = (device.status, device.rate_plan, device.communication_plan)
                    # Pass 1 yields everything (a repeat is a newer record); later passes
                    # only what the earlier ones missed or what changed since.
                    if pass_no == 1 or yielded.get(device.iccid) != state:
                        yielded[device.iccid] = state
                        stats.devices += 1
                        yield device
                if page.last_page or not page.devices:
                    break
                page_number += 1
            if shifted:
                stats.shifted = True
            else:
                break
        stats.complete = True

    async def get_device(self, iccid: str) -> Device:
        body = await self._get("device", f"/devices/{_check_iccid(iccid)}")
        return _decode_dated(
            body, Device, "device", ("dateActivated", "dateUpdated", "dateShipped")
        )

    async def get_session_info(self, iccid: str) -> SessionInfo:
        body = await self._get("session_info", f"/devices/{_check_iccid(iccid)}/sessionInfo")
        return _decode_dated(
            body, SessionInfo, "session_info", ("dateSessionStarted", "dateSessionEnded")
        )

    async def get_ctd_usages(self, iccid: str) -> CtdUsage:
        body = await self._get("ctd_usages", f"/devices/{_check_iccid(iccid)}/ctdUsages")
        return _decode_dated(body, CtdUsage, "ctd_usages", ())

    # -- plumbing ------------------------------------------------------------------------

    async def _get(
        self,
        operation: Literal["devices", "device", "session_info", "ctd_usages"],
        path: str,
        params: Mapping[str, str | int] | None = None,
    ) -> bytes:
        cfg = self.config
        tries = max(1, cfg.max_tries)
        for attempt in range(1, tries + 1):
            await self._bucket.acquire()
            started = time.monotonic()
            wait: float | None = None
            try:
                response = await self._http.get(path, params=params)
            except httpx.TransportError as exc:
                error = ControlCenterError(
                    0, "transport_error", type(exc).__name__, operation=operation
                )
            else:
                if 200 <= response.status_code < 300:
                    self._report(operation, response.status_code, started, attempt, "ok")
                    return response.content
                error = _error_from(response, operation)
                wait = retry_after_seconds(response.headers.get("Retry-After"))
            if error.retryable and attempt < tries:
                self._report(operation, error.status, started, attempt, "retry")
                delay = wait if wait is not None else cfg.retry_base_delay_s * attempt
                delay = min(max(0.0, delay), cfg.max_retry_after_s)
                log.warning(
                    "control center %s: %s %s, retry %d in %.1fs",
                    operation,
                    error.status,
                    error.error_code,
                    attempt,
                    delay,
                )
                await self._sleep(delay)
                continue
            self._report(operation, error.status, started, attempt, "error")
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    def _report(
        self,
        operation: Literal["devices", "device", "session_info", "ctd_usages"],
        status: int,
        started: float,
        attempt: int,
        outcome: Literal["ok", "retry", "error"],
    ) -> None:
        if self._on_request is None:
            return
        event = RequestEvent(
            operation=operation,
            status=status,
            duration_s=time.monotonic() - started,
            attempt=attempt,
            outcome=outcome,
        )
        try:
            self._on_request(event)
        except Exception:  # a metrics hook must never break a call
            log.exception("request hook failed")


def _error_from(response: httpx.Response, operation: str) -> ControlCenterError:
    code: str | None = None
    message: str | None = None
    try:
        body: Any = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict):
        raw_code = body.get("errorCode")
        raw_message = body.get("errorMessage")
        code = None if raw_code is None else str(raw_code)
        message = None if raw_message is None else str(raw_message)
    if message is None:
        message = response.reason_phrase or None
    return ControlCenterError(response.status_code, code, message, operation=operation)


def _decode(body: bytes, kind: type[T], operation: str) -> T:
    try:
        return msgspec.json.decode(body, type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise ControlCenterError(200, "invalid_response", str(exc), operation=operation) from None
    except msgspec.DecodeError:
        raise ControlCenterError(
            200, "invalid_response", "body is not JSON", operation=operation
        ) from None


def _decode_dated(body: bytes, kind: type[T], operation: str, date_fields: tuple[str, ...]) -> T:
    """Decode, reading dates in the platform's style (msgspec only takes RFC 3339)."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise ControlCenterError(
            200, "invalid_response", "body is not JSON", operation=operation
        ) from None
    if not isinstance(raw, dict):
        raise ControlCenterError(200, "invalid_response", "not an object", operation=operation)
    try:
        for name in date_fields:
            if name in raw:
                raw[name] = parse_optional_datetime(raw[name])
        return msgspec.convert(raw, kind, strict=False)
    except (ValueError, msgspec.ValidationError) as exc:
        raise ControlCenterError(200, "invalid_response", str(exc), operation=operation) from None
