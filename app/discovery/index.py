"""The in-memory fleet index each API worker searches (no I/O here).

Why in memory: a PostgreSQL nearest-neighbour query per request reaches ~0.06× the
throughput of a hello-world route on this machine; the target is ≥ 0.5×. So each API
worker holds the fleet in compact arrays and answers nearby search without a database
round trip; `app/discovery/live.py` keeps it fresh from PostgreSQL NOTIFY deltas.

Layout (for 1,000,000 connectors ≈ 100 MB per worker):
- sites, sorted by a 0.01° grid-cell key: numpy lat/lon/key arrays, connector ranges, and
  a pre-rendered JSON prefix with the site's static fields;
- connectors, contiguous per site: `bytearray` type/status codes, `array` charger index,
  power and OCPP connector number, UUID text in numpy `S36` arrays (JSON fragments
  built lazily, cached per site);
- chargers: a `bytearray` visibility flag (connectivity online/degraded) and UUIDs;
- sorted sequence numbers (`*_seq` columns) to apply deltas by key without dicts.
"""

from __future__ import annotations

import math
import uuid
from array import array
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from app.discovery.geodesy import approx_m, geodesic_m

CELL_DEG = 0.01
NX = round(360 / CELL_DEG)
# approx_m is within 0.6 m of the geodesic up to 75 km; candidates this close to the
# radius are decided with Vincenty.
EDGE_MARGIN_M = 1.0

CONNECTOR_TYPES = ("CCS2", "CHADEMO", "TYPE2", "CCS1", "NACS", "GBT")
TYPE_CODE = {t: i for i, t in enumerate(CONNECTOR_TYPES)}
TYPE_JSON = [t.encode() for t in CONNECTOR_TYPES]
STATUSES = ("AVAILABLE", "OCCUPIED", "RESERVED", "UNAVAILABLE", "FAULTED")
STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}
STATUS_JSON = [s.encode() + b'"}' for s in STATUSES]
AVAILABLE = STATUS_CODE["AVAILABLE"]
VISIBLE_STATES = frozenset({"online", "degraded"})
FRAGMENT_CACHE_SITES = 40_000


def grid_key(lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.int64]:
    cy = np.floor((lat + 90.0) / CELL_DEG).astype(np.int64)
    cx = np.floor((lon + 180.0) / CELL_DEG).astype(np.int64) % NX
    key: NDArray[np.int64] = cy * NX + cx
    return key


def _uuid_text(raw: bytes) -> bytes:
    h = raw.hex().encode()
    return h[:8] + b"-" + h[8:12] + b"-" + h[12:16] + b"-" + h[16:20] + b"-" + h[20:]


def _power_json(power_w: int) -> bytes:
    kw = power_w / 1000
    return msgspec.json.encode(float(kw))


class SiteRow(msgspec.Struct, array_like=True):
    site_seq: int
    site_id: bytes
    name: str
    address: str
    lat: float
    lon: float
    timezone: str


class ChargerRow(msgspec.Struct, array_like=True):
    charger_seq: int
    charger_id: bytes
    site_seq: int
    state: str


class ConnectorRow(msgspec.Struct, array_like=True):
    connector_seq: int
    connector_id: bytes
    charger_seq: int
    site_seq: int
    connector_no: int
    type: str
    power_w: int
    status: str


@dataclass
class Hit:
    site: int
    distance_m: float


@dataclass
class Query:
    lat: float
    lon: float
    radius_m: float = 5000.0
    limit: int = 20
    connector_type: int | None = None
    min_power_w: int = 0
    available_only: bool = False


@dataclass
class FleetIndex:
    # sites, in grid-key order
    site_lat: NDArray[np.float64]
    site_lon: NDArray[np.float64]
    site_key: NDArray[np.int64]
    site_seq: NDArray[np.int64]
    site_static_blob: bytes
    site_static_off: NDArray[np.int64]
    site_conn_start: array[int]
    site_conn_end: array[int]
    # connectors, contiguous per site
    conn_uuid: NDArray[Any]
    conn_charger: array[int]
    conn_no: array[int]
    conn_power_w: array[int]
    conn_type: bytearray
    conn_status: bytearray
    # chargers
    charger_uuid: NDArray[Any]
    charger_visible: bytearray
    # lookups by sequence number and by UUID
    conn_seq_sorted: NDArray[np.int64]
    conn_seq_pos: NDArray[np.int64]
    charger_seq_sorted: NDArray[np.int64]
    charger_seq_pos: NDArray[np.int64]
    site_uuid_sorted: NDArray[Any]
    site_uuid_pos: NDArray[np.int64]
    _fragments: dict[int, list[bytes]] = field(default_factory=dict)

    # ---- construction -----------------------------------------------------------------

    @classmethod
    def build(
        cls, sites: list[SiteRow], chargers: list[ChargerRow], connectors: list[ConnectorRow]
    ) -> FleetIndex:
        lat = np.fromiter((s.lat for s in sites), dtype=np.float64, count=len(sites))
        lon = np.fromiter((s.lon for s in sites), dtype=np.float64, count=len(sites))
        keys = grid_key(lat, lon)
        order = np.argsort(keys, kind="stable")
        sites = [sites[i] for i in order.tolist()]
        lat, lon, keys = lat[order], lon[order], keys[order]
        site_pos = {s.site_seq: i for i, s in enumerate(sites)}

        charger_pos = {c.charger_seq: i for i, c in enumerate(chargers)}
        charger_visible = bytearray(1 if c.state in VISIBLE_STATES else 0 for c in chargers)

        conns = [c for c in connectors if c.site_seq in site_pos and c.charger_seq in charger_pos]
        conns.sort(key=lambda c: (site_pos[c.site_seq], c.charger_seq, c.connector_no))
        start = array("i", [0]) * len(sites)
        end = array("i", [0]) * len(sites)
        for i, c in enumerate(conns):
            p = site_pos[c.site_seq]
            if end[p] == 0:
                start[p] = i
            end[p] = i + 1

        conn_seq = np.fromiter((c.connector_seq for c in conns), dtype=np.int64, count=len(conns))
        conn_order = np.argsort(conn_seq)
        charger_seq = np.fromiter(
            (c.charger_seq for c in chargers), dtype=np.int64, count=len(chargers)
        )
        charger_order = np.argsort(charger_seq)
        site_uuids = np.array([s.site_id for s in sites], dtype="S16")
        # One blob + offsets rather than 250k small bytes objects: long-lived small
        # objects scattered among the load's temporaries would pin the allocator's arenas.
        statics = [_site_static(s) for s in sites]
        static_off = np.zeros(len(statics) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in statics], out=static_off[1:])
        static_blob = b"".join(statics)
        del statics
        uuid_order = np.argsort(site_uuids)
        return cls(
            site_lat=lat,
            site_lon=lon,
            site_key=keys,
            site_seq=np.fromiter((s.site_seq for s in sites), dtype=np.int64, count=len(sites)),
            site_static_blob=static_blob,
            site_static_off=static_off,
            site_conn_start=start,
            site_conn_end=end,
            conn_uuid=np.array([_uuid_text(c.connector_id) for c in conns], dtype="S36"),
            conn_charger=array("i", (charger_pos[c.charger_seq] for c in conns)),
            conn_no=array("b", (c.connector_no for c in conns)),
            conn_power_w=array("i", (c.power_w for c in conns)),
            conn_type=bytearray(TYPE_CODE[c.type] for c in conns),
            conn_status=bytearray(STATUS_CODE[c.status] for c in conns),
            charger_uuid=np.array([_uuid_text(c.charger_id) for c in chargers], dtype="S36"),
            charger_visible=charger_visible,
            conn_seq_sorted=conn_seq[conn_order],
            conn_seq_pos=conn_order.astype(np.int64),
            charger_seq_sorted=charger_seq[charger_order],
            charger_seq_pos=charger_order.astype(np.int64),
            site_uuid_sorted=site_uuids[uuid_order],
            site_uuid_pos=uuid_order.astype(np.int64),
        )

    @property
    def connector_count(self) -> int:
        return len(self.conn_status)

    # ---- deltas -----------------------------------------------------------------------

    def set_connector_status(self, connector_seq: int, status: str) -> bool:
        i = _find(self.conn_seq_sorted, self.conn_seq_pos, connector_seq)
        code = STATUS_CODE.get(status)
        if i is None or code is None:
            return False
        self.conn_status[i] = code
        return True

    def set_charger_state(self, charger_seq: int, state: str) -> bool:
        i = _find(self.charger_seq_sorted, self.charger_seq_pos, charger_seq)
        if i is None:
            return False
        self.charger_visible[i] = 1 if state in VISIBLE_STATES else 0
        return True

    def site_by_uuid(self, site_id: uuid.UUID) -> int | None:
        raw = np.array([site_id.bytes], dtype="S16")
        j = int(np.searchsorted(self.site_uuid_sorted, raw[0]))
        if j < len(self.site_uuid_sorted) and self.site_uuid_sorted[j] == raw[0]:
            return int(self.site_uuid_pos[j])
        return None

    # ---- search -----------------------------------------------------------------------

    def candidates(self, q: Query) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Sites in the grid cells covering the radius, with approximate distances."""
        dlat = q.radius_m / 110_574.0 + CELL_DEG
        lat_lo, lat_hi = max(-90.0, q.lat - dlat), min(90.0, q.lat + dlat)
        cos_lat = math.cos(math.radians(min(89.9, max(abs(lat_lo), abs(lat_hi)))))
        dlon = q.radius_m / (111_320.0 * cos_lat) + CELL_DEG
        cy0 = math.floor((lat_lo + 90.0) / CELL_DEG)
        cy1 = math.floor((lat_hi + 90.0) / CELL_DEG)
        if dlon >= 180.0:
            spans = [(0, NX - 1)]
        else:
            cx0 = math.floor((q.lon - dlon + 180.0) / CELL_DEG)
            cx1 = math.floor((q.lon + dlon + 180.0) / CELL_DEG)
            if cx0 < 0:  # wraps west across the antimeridian
                spans = [(cx0 + NX, NX - 1), (0, cx1)]
            elif cx1 >= NX:  # wraps east
                spans = [(cx0, NX - 1), (0, cx1 - NX)]
            else:
                spans = [(cx0, cx1)]
        rows = np.arange(cy0, cy1 + 1, dtype=np.int64) * NX
        lo = np.concatenate([rows + a for a, _ in spans])
        hi = np.concatenate([rows + b + 1 for _, b in spans])
        starts = np.searchsorted(self.site_key, lo)
        ends = np.searchsorted(self.site_key, hi)
        parts = [
            np.arange(s, e) for s, e in zip(starts.tolist(), ends.tolist(), strict=True) if e > s
        ]
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return empty, np.empty(0, dtype=np.float64)
        idx = np.concatenate(parts) if len(parts) > 1 else parts[0]
        dist = approx_m(q.lat, q.lon, self.site_lat[idx], self.site_lon[idx])
        inside = dist <= q.radius_m + EDGE_MARGIN_M
        return idx[inside], dist[inside]

    def search(self, q: Query) -> list[tuple[int, float, list[int]]]:
        """Nearest sites with at least one matching live connector:
        [(site, distance_m, [connector positions])], nearest first.

        Searches a small disc first and widens it (×4) until `limit` matches lie inside
        it or the requested radius is reached: every site within the disc is examined, so
        the matches found are the true nearest, and dense cities cost little."""
        r = min(q.radius_m, 1000.0)
        while True:
            sub = Query(q.lat, q.lon, r, q.limit, q.connector_type, q.min_power_w, q.available_only)
            hits = self._search_disc(sub)
            if len(hits) >= q.limit or r >= q.radius_m:
                return hits
            r = min(q.radius_m, r * 4)

    def _search_disc(self, q: Query) -> list[tuple[int, float, list[int]]]:
        idx, dist = self.candidates(q)
        if len(idx) == 0:
            return []
        order = np.argsort(dist, kind="stable")
        out: list[tuple[int, float, list[int]]] = []
        visible = self.charger_visible
        status = self.conn_status
        ctype = self.conn_type
        power = self.conn_power_w
        charger = self.conn_charger
        want_type = q.connector_type
        min_power = q.min_power_w
        only_available = q.available_only
        for k in order.tolist():
            s = int(idx[k])
            matched: list[int] = []
            for j in range(self.site_conn_start[s], self.site_conn_end[s]):
                if not visible[charger[j]]:
                    continue
                if want_type is not None and ctype[j] != want_type:
                    continue
                if power[j] < min_power:
                    continue
                if only_available and status[j] != AVAILABLE:
                    continue
                matched.append(j)
            if not matched:
                continue
            d = float(dist[k])
            if d > q.radius_m - EDGE_MARGIN_M:  # near the edge: decide with Vincenty
                d = float(
                    geodesic_m(q.lat, q.lon, self.site_lat[s : s + 1], self.site_lon[s : s + 1])[0]
                )
                if d > q.radius_m:
                    continue
            out.append((s, d, matched))
            if len(out) >= q.limit:
                break
        return out

    def live_connectors(self, site: int) -> list[int]:
        visible = self.charger_visible
        charger = self.conn_charger
        return [
            j
            for j in range(self.site_conn_start[site], self.site_conn_end[site])
            if visible[charger[j]]
        ]

    # ---- rendering --------------------------------------------------------------------

    def _connector_fragments(self, site: int) -> list[bytes]:
        frags = self._fragments.get(site)
        if frags is None:
            if len(self._fragments) >= FRAGMENT_CACHE_SITES:
                self._fragments.clear()
            start = self.site_conn_start[site]
            frags = [
                b'{"connector_id":"'
                + self.conn_uuid[j]
                + b'","charger_id":"'
                + self.charger_uuid[self.conn_charger[j]]
                + b'","connector_no":'
                + str(self.conn_no[j]).encode()
                + b',"type":"'
                + TYPE_JSON[self.conn_type[j]]
                + b'","power_kw":'
                + _power_json(self.conn_power_w[j])
                + b',"status":"'
                for j in range(start, self.site_conn_end[site])
            ]
            self._fragments[site] = frags
        return frags

    def render_site(
        self, site: int, distance_m: float | None, connectors: list[int], tail: bytes
    ) -> bytes:
        """One `site` object of API.md as JSON; `tail` closes it (price, timeline…)."""
        frags = self._connector_fragments(site)
        start = self.site_conn_start[site]
        status = self.conn_status
        parts = [frags[j - start] + STATUS_JSON[status[j]] for j in connectors]
        available = sum(1 for j in connectors if status[j] == AVAILABLE)
        dist = (
            b',"distance_m":null'
            if distance_m is None
            else b',"distance_m":' + f"{distance_m:.1f}".encode()
        )
        off = self.site_static_off
        return (
            self.site_static_blob[off[site] : off[site + 1]]
            + dist
            + b',"available_count":'
            + str(available).encode()
            + b',"connectors":['
            + b",".join(parts)
            + b"]"
            + tail
        )


def _site_static(s: SiteRow) -> bytes:
    return (
        b'{"site_id":"'
        + _uuid_text(s.site_id)
        + b'","name":'
        + msgspec.json.encode(s.name)
        + b',"address":'
        + msgspec.json.encode(s.address)
        + b',"lat":'
        + msgspec.json.encode(s.lat)
        + b',"lon":'
        + msgspec.json.encode(s.lon)
        + b',"timezone":'
        + msgspec.json.encode(s.timezone)
    )


def _find(sorted_keys: NDArray[np.int64], positions: NDArray[np.int64], key: int) -> int | None:
    j = int(np.searchsorted(sorted_keys, key))
    if j < len(sorted_keys) and int(sorted_keys[j]) == key:
        return int(positions[j])
    return None
