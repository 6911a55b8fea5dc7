"""Nearby search over the index with numpy: the reference the C kernel is checked
against (tests/discovery/test_kernel.py), and the fallback without it.

A search is a handful of numpy operations over the candidate sites of a small disc (no
per-connector Python loop).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from app.discovery.columns import (
    AVAILABLE,
    CELL_DEG,
    I64,
    NO_HITS,
    NX,
    Hits,
    Query,
    ranges,
)
from app.discovery.geodesy import chord_to_surface, ecef_point

if TYPE_CHECKING:
    from app.discovery.index import FleetIndex


def candidates(
    ix: FleetIndex, lat: float, lon: float, radius_m: float
) -> tuple[I64, NDArray[np.float64]]:
    """Sites within `radius_m` of the point, with their geodesic distances.

    Reads the grid cells covering the disc's bounding box: a degree of latitude is
    at least 110,574 m, one of longitude at least 111,319 m × cos(latitude)."""
    dlat = radius_m / 110_574.0
    lat_lo, lat_hi = max(-90.0, lat - dlat), min(90.0, lat + dlat)
    cos_lat = math.cos(math.radians(min(89.99, max(abs(lat_lo), abs(lat_hi)))))
    dlon = radius_m / (111_319.0 * cos_lat)
    cy0 = math.floor((lat_lo + 90.0) / CELL_DEG)
    cy1 = math.floor((lat_hi + 90.0) / CELL_DEG)
    rows = np.arange(cy0, cy1 + 1, dtype=np.int64) * NX
    if dlon >= 180.0:
        lo, hi = rows, rows + NX
    else:
        cx0 = math.floor((lon - dlon + 180.0) / CELL_DEG)
        cx1 = math.floor((lon + dlon + 180.0) / CELL_DEG)
        if cx0 < 0:  # wraps west across the antimeridian
            lo = np.concatenate([rows + (cx0 + NX), rows])
            hi = np.concatenate([rows + NX, rows + (cx1 + 1)])
        elif cx1 >= NX:  # wraps east
            lo = np.concatenate([rows + cx0, rows])
            hi = np.concatenate([rows + NX, rows + (cx1 - NX + 1)])
        else:
            lo, hi = rows + cx0, rows + (cx1 + 1)
    starts = np.searchsorted(ix.site_key, lo)
    lens = np.searchsorted(ix.site_key, hi) - starts
    idx = ranges(starts, lens)
    if len(idx) == 0:
        return idx, np.empty(0, dtype=np.float64)
    d = ix.site_xyz[idx] - ecef_point(lat, lon)
    dist = chord_to_surface(np.sqrt(np.einsum("ij,ij->i", d, d)))
    inside = dist <= radius_m
    return idx[inside], dist[inside]


def nearest(ix: FleetIndex, q: Query) -> Hits:
    """The nearest `limit` sites with at least one matching live connector.

    Searches a small disc first and widens it (×4) until `limit` matches lie inside
    it or the requested radius is reached: every site within the disc is examined, so
    the matches found are the true nearest, and dense cities cost little."""
    r = min(q.radius_m, 1000.0)
    while True:
        hits = _search_disc(ix, q, r)
        if len(hits) >= q.limit or r >= q.radius_m:
            return hits
        r = min(q.radius_m, r * 4)


def _search_disc(ix: FleetIndex, q: Query, r: float) -> Hits:
    idx, dist = candidates(ix, q.lat, q.lon, r)
    if len(idx) == 0:
        return NO_HITS
    order = np.argsort(dist, kind="stable")
    idx, dist = idx[order], dist[order]
    # Examine the nearest sites in growing chunks: a handful usually suffices.
    done = 0
    chunk = max(4 * q.limit, 64)
    found: list[Hits] = []
    need = q.limit
    while done < len(idx) and need > 0:
        part = _match(ix, q, idx[done : done + chunk], dist[done : done + chunk], need)
        if len(part):
            found.append(part)
            need -= len(part)
        done += chunk
        chunk *= 4
    if not found:
        return NO_HITS
    if len(found) == 1:
        return found[0]
    return Hits(
        np.concatenate([h.sites for h in found]),
        np.concatenate([h.distance_m for h in found]),
        np.concatenate([h.counts for h in found]),
        np.concatenate([h.connectors for h in found]),
    )


def _match(ix: FleetIndex, q: Query, idx: I64, dist: NDArray[np.float64], limit: int) -> Hits:
    """Matching connectors of the sites `idx` (ordered by distance); at most `limit`
    sites with a match."""
    start = ix.site_conn_start[idx]
    lens = ix.site_conn_end[idx] - start
    pos = ranges(start, lens)
    if len(pos) == 0:
        return NO_HITS
    ok = ix.charger_visible[ix.conn_charger[pos]].view(np.bool_)
    if q.connector_type is not None:
        ok = ok & (ix.conn_type[pos] == q.connector_type)
    if q.min_power_w > 0:
        ok = ok & (ix.conn_power_w[pos] >= q.min_power_w)
    if q.available_only:
        ok = ok & (ix.conn_status[pos] == AVAILABLE)
    owner = np.repeat(np.arange(len(idx)), lens)[ok]
    pos = pos[ok]
    per_site = np.bincount(owner, minlength=len(idx))
    chosen = np.flatnonzero(per_site)[:limit]
    if len(chosen) == 0:
        return NO_HITS
    take = np.zeros(len(idx), dtype=np.bool_)
    take[chosen] = True
    return Hits(idx[chosen], dist[chosen], per_site[chosen], pos[take[owner]])


def live_connectors(ix: FleetIndex, site: int) -> I64:
    pos = np.arange(ix.site_conn_start[site], ix.site_conn_end[site], dtype=np.int64)
    live: I64 = pos[ix.charger_visible[ix.conn_charger[pos]] == 1]
    return live
