"""Nearby search and site detail over the in-memory index; optional place geocoding."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.core.errors import DomainError, FieldError, NotFound, ServiceUnavailable, ValidationFailed
from app.discovery import render, search
from app.discovery.columns import TYPE_CODE, Query
from app.discovery.index import FleetIndex
from app.discovery.prices import price_tails

if TYPE_CHECKING:
    from app.pricing.book import PriceBook

log = logging.getLogger("app.discovery")
NEARBY_TAIL = b',"price":null}'
DETAIL_TAIL = b',"price":null,"price_timeline":[]}'


class SiteNotFound(NotFound):
    code, title = "site_not_found", "No such site (or none of its chargers is online)"


class GeocoderUnavailable(ServiceUnavailable):
    code, title = "geocoder_unavailable", "Place search is unavailable"


class PlaceNotFound(DomainError):
    status, code, title = 422, "place_not_found", "No place matches `q`"


def nearby(
    index: FleetIndex,
    *,
    lat: float,
    lon: float,
    radius_m: int,
    limit: int,
    connector_type: str | None,
    min_power_kw: float | None,
    available_only: bool,
    prices: PriceBook | None = None,
) -> bytes:
    q = Query(
        lat=lat,
        lon=lon,
        radius_m=float(radius_m),
        limit=limit,
        connector_type=TYPE_CODE[connector_type] if connector_type else None,
        min_power_w=round((min_power_kw or 0) * 1000),
        available_only=available_only,
    )
    hits = index.search(q)
    tails: list[bytes] | bytes = NEARBY_TAIL
    if prices is not None and prices.sites and len(hits):
        # The site-level tariff's price now (cached per site until it changes).
        tails = price_tails(index, prices, hits.sites)
    return b'{"items":[' + index.render(hits, q, tails) + b'],"next_cursor":null}'


def site_detail(index: FleetIndex, site_id: str, prices: PriceBook | None = None) -> bytes:
    """A site with its live connectors; a site whose chargers are all offline is absent
    (404), exactly as it is absent from nearby search."""
    try:
        key = uuid.UUID(site_id)
    except ValueError:
        raise SiteNotFound() from None
    site = index.site_by_uuid(key)
    if site is None:
        raise SiteNotFound()
    connectors = search.live_connectors(index, site)
    if len(connectors) == 0:
        raise SiteNotFound()
    tail = DETAIL_TAIL
    if prices is not None:
        price, timeline = prices.site_detail_json(key.bytes)
        tail = b',"price":' + price + b',"price_timeline":' + timeline + b"}"
    return render.site_detail(index, site, connectors, tail)


class Geocoder:
    """geopy Nominatim against a self-hosted server (`GEOCODER_URL`), cached in process."""

    def __init__(self, url: str, *, timeout_s: float = 2.0, ttl_s: float = 86_400) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self._cache: OrderedDict[str, tuple[float, tuple[float, float] | None]] = OrderedDict()
        self._geolocator: object | None = None

    async def _locator(self) -> object:
        if self._geolocator is None:
            from geopy.adapters import AioHTTPAdapter
            from geopy.geocoders import Nominatim

            parts = urlsplit(self.url)
            self._geolocator = Nominatim(
                domain=parts.netloc + parts.path.rstrip("/"),
                scheme=parts.scheme or "https",
                user_agent="voltway",
                timeout=self.timeout_s,
                adapter_factory=AioHTTPAdapter,
            )
        return self._geolocator

    async def resolve(self, q: str) -> tuple[float, float]:
        key = " ".join(q.lower().split())
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl_s:
            if hit[1] is None:
                raise PlaceNotFound(errors=[FieldError(field="q", message="no place matches")])
            return hit[1]
        from geopy.exc import GeopyError

        locator = await self._locator()
        try:
            async with asyncio.timeout(self.timeout_s + 0.5):
                location = await locator.geocode(q, exactly_one=True)  # type: ignore[attr-defined]
        except (GeopyError, TimeoutError, OSError) as exc:
            log.warning("geocoder failed: %r", exc)
            raise GeocoderUnavailable("the place search service did not answer") from None
        value = None if location is None else (float(location.latitude), float(location.longitude))
        self._cache[key] = (now, value)
        if len(self._cache) > 10_000:
            self._cache.popitem(last=False)
        if value is None:
            raise PlaceNotFound(errors=[FieldError(field="q", message="no place matches")])
        return value

    async def close(self) -> None:
        locator = self._geolocator
        if locator is not None and hasattr(locator, "adapter"):
            adapter = locator.adapter
            if hasattr(adapter, "__aexit__"):
                await adapter.__aexit__(None, None, None)


def require_position(lat: float | None, lon: float | None) -> tuple[float, float]:
    missing = [n for n, v in (("lat", lat), ("lon", lon)) if v is None]
    if missing:
        raise ValidationFailed(
            "lat and lon (or q) are required",
            errors=[FieldError(field=m, message="required unless q is given") for m in missing],
        )
    assert lat is not None
    assert lon is not None
    return lat, lon
