"""Twilio's Messages API through the official library's async client (INTEGRATIONS.md §4).

`Client(sid, token, http_client=AsyncTwilioHttpClient())`, `client.api.base_url` pointed at
`TWILIO_API_BASE` when set (Prism, the tests' recording stand-in), and
`await client.messages.create_async(...)` → `POST /2010-04-01/Accounts/{sid}/Messages.json`,
form-encoded, HTTP Basic auth.

Around it: a timeout per request (the library's async client ignores its own `timeout`
argument, and hands aiohttp a `BasicAuth` object that aiohttp 3.14 deprecates: a small
subclass fixes both), retries with exponential back-off and jitter on 429,
5xx and network errors, and typed outcomes: error 21610 (the recipient replied STOP) is
`SmsOptedOut` and never retried; other 4xx are `SmsRejected`; transient failures that
outlast the retries are `SmsUnavailable`, for the job to retry later.

A timed-out request is ambiguous (Twilio may have accepted it); it is retried, so a rare
duplicate is preferred over a lost code. Message bodies are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import msgspec
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from app.core.settings import Settings

log = logging.getLogger("app.notifications.twilio")
# The library logs every request line at INFO; keep it quiet (and it never needs a body).
_library_log = logging.getLogger("twilio.async_http_client")
_library_log.setLevel(logging.WARNING)

ERR_OPTED_OUT = 21610  # "Attempt to send to unsubscribed recipient"
ERR_TOO_MANY_REQUESTS = 20429
MAX_VALIDITY_S = 36_000  # Twilio's documented ceiling for ValidityPeriod


class SmsError(Exception):
    """A message Twilio did not accept; `code` is Twilio's error code when it gave one."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class SmsOptedOut(SmsError):
    """The recipient replied STOP (21610): do not retry, remember the opt-out."""


class SmsRejected(SmsError):
    """A permanent refusal (bad number, bad sender, …): retrying cannot help."""


class SmsUnavailable(SmsError):
    """Twilio was unreachable, slow, overloaded or rate limiting after every retry."""


class SentSms(msgspec.Struct, frozen=True):
    sid: str
    status: str


class _AsyncHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The library's aiohttp client, sending Basic auth as a plain header and applying its
    own timeout when a call gives none."""

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's own signature
        allow_redirects: bool = False,
    ) -> Any:
        headers = dict(headers or {})
        if auth is not None:
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"
        return await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )


def _is_transient(status: int, code: int | None) -> bool:
    return status == 429 or status >= 500 or code == ERR_TOO_MANY_REQUESTS


class TwilioSms:
    """One per process (it holds an aiohttp session); `await aclose()` at shutdown."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_: str,
        *,
        api_base: str = "",
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.account_sid = account_sid
        self.from_ = from_
        self._auth_token = auth_token
        self.api_base = api_base.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max(0, max_retries)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._http: _AsyncHttpClient | None = None
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioSms:
        return cls(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            settings.twilio_from,
            api_base=settings.twilio_api_base,
            timeout_s=settings.twilio_timeout_s,
            max_retries=settings.twilio_max_retries,
        )

    def _twilio(self) -> Any:
        # Built lazily: aiohttp wants its session created inside the running event loop.
        if self._client is None:
            self._http = _AsyncHttpClient(timeout=self.timeout_s, logger=_library_log)
            client = Client(self.account_sid, self._auth_token, http_client=self._http)
            if self.api_base:
                client.api.base_url = self.api_base
            self._client = client
        return self._client

    async def send(
        self,
        to: str,
        body: str,
        *,
        status_callback: str | None = None,
        validity_period_s: int | None = None,
    ) -> SentSms:
        """Create the message; returns Twilio's SID and status (usually `queued`)."""
        kwargs: dict[str, Any] = {"to": to, "body": body}
        if self.from_.startswith("MG"):  # a Messaging Service SID instead of a number
            kwargs["messaging_service_sid"] = self.from_
        else:
            kwargs["from_"] = self.from_
        if status_callback:
            kwargs["status_callback"] = status_callback
        if validity_period_s is not None:
            kwargs["validity_period"] = max(1, min(MAX_VALIDITY_S, int(validity_period_s)))
        last: SmsError | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                await self._sleep(delay * (0.5 + random.random() / 2))
            try:
                async with asyncio.timeout(self.timeout_s):
                    message = await self._twilio().messages.create_async(**kwargs)
                return SentSms(sid=str(message.sid), status=str(message.status or "queued"))
            except TwilioRestException as exc:
                status, code = int(exc.status), _int_or_none(exc.code)
                last = _classify(status, code, str(exc.msg))
            except TwilioServiceException as exc:
                status, code = int(exc.status), _int_or_none(exc.code)
                last = _classify(status, code, str(exc.title))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                last = SmsUnavailable(f"Twilio unreachable: {type(exc).__name__}")
            if not isinstance(last, SmsUnavailable):
                raise last
            log.warning(
                "twilio send attempt %d/%d failed: status=%s code=%s",
                attempt + 1,
                self.max_retries + 1,
                last.status,
                last.code,
            )
        assert last is not None
        raise last

    async def find_sent(self, to: str, body: str, *, since: datetime) -> SentSms | None:
        """A message to `to` with this body created at or after `since`, if Twilio has one:
        after a worker died mid-send, this tells a send that reached Twilio from one that
        did not (so the retry does not text the driver twice). None when there is none or
        Twilio cannot say (then the caller sends, accepting a rare duplicate)."""
        kwargs: dict[str, Any] = {"to": to, "page_size": 50}
        if not self.from_.startswith("MG"):
            kwargs["from_"] = self.from_
        try:
            async with asyncio.timeout(self.timeout_s):
                page = await self._twilio().messages.page_async(**kwargs)
        except (TwilioException, TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("could not list messages at Twilio: %s", type(exc).__name__)
            return None
        floor = since - timedelta(seconds=5)  # Twilio's dates have whole seconds
        for message in page:
            created = message.date_created
            if message.body == body and (created is None or created >= floor):
                return SentSms(sid=str(message.sid), status=str(message.status or "queued"))
        return None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = None
        self._client = None

    async def __aenter__(self) -> TwilioSms:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


def _int_or_none(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _classify(status: int, code: int | None, message: str) -> SmsError:
    if code == ERR_OPTED_OUT:
        return SmsOptedOut("the recipient opted out (21610)", status=status, code=code)
    if _is_transient(status, code):
        return SmsUnavailable(f"Twilio answered {status}", status=status, code=code)
    # Twilio's message names the problem (e.g. an invalid 'To'); it never echoes the body.
    return SmsRejected(
        f"Twilio refused the message ({status}): {message}"[:300], status=status, code=code
    )
