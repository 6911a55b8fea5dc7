"""The in-memory fleet index each API worker searches (no I/O here).

Why in memory: a PostgreSQL nearest-neighbour query per request reaches ~0.06× the
throughput of a hello-world route on this machine; the target is ≥ 0.5×. So each API
worker holds the fleet in compact numpy arrays and answers nearby search without a
database round trip; `app/discovery/live.py` keeps it fresh from PostgreSQL NOTIFY deltas.

Layout (1,000,000 connectors ≈ 130 MB per worker):
- sites, sorted by a 0.01° grid-cell key: lat/lon/key arrays, their connector ranges, and
  one blob of pre-rendered JSON prefixes (name, address, … — fields that never change
  without a rebuild);
- connectors, contiguous per site: uint8 type/status codes, charger index, power, OCPP
  connector number and raw 16-byte UUIDs;
- chargers: a uint8 visibility flag (connectivity online/degraded) and raw UUIDs;
- sorted sequence numbers (`*_seq` columns) to apply deltas by key without dicts.

A search is a handful of numpy operations over the candidate sites of a small disc
(no per-connector Python loop), and the connectors of a whole response are rendered in
one go into fixed-width JSON records (values padded with JSON whitespace) — so the cost of
a response hardly depends on how many connectors it lists. Statuses are read at render
time, so a delta is visible in the next response.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from app.discovery import kernel
from app.discovery.geodesy import chord_to_surface, ecef, ecef_point

CELL_DEG = 0.01
NX = round(360 / CELL_DEG)

CONNECTOR_TYPES = ("CCS2", "CHADEMO", "TYPE2", "CCS1", "NACS", "GBT")
TYPE_CODE = {t: i for i, t in enumerate(CONNECTOR_TYPES)}
STATUSES = ("AVAILABLE", "OCCUPIED", "RESERVED", "UNAVAILABLE", "FAULTED")
STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}
AVAILABLE = STATUS_CODE["AVAILABLE"]
VISIBLE_STATES = frozenset({"online", "degraded"})
MAX_LIMIT = 100  # API.md: limit ≤ 100

I64 = NDArray[np.int64]
U8 = NDArray[np.uint8]


def grid_key(lat: NDArray[np.float64], lon: NDArray[np.float64]) -> I64:
    cy = np.floor((lat + 90.0) / CELL_DEG).astype(np.int64)
    cx = np.floor((lon + 180.0) / CELL_DEG).astype(np.int64) % NX
    key: I64 = cy * NX + cx
    return key


def _uuid_text(raw: bytes) -> bytes:
    h = raw.hex().encode()
    return h[:8] + b"-" + h[8:12] + b"-" + h[12:16] + b"-" + h[16:20] + b"-" + h[20:]


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
class ChargerCols:
    """Chargers as columns (what `live.py` loads with binary COPY)."""

    seq: NDArray[Any]
    visible: NDArray[Any]  # 1 when connectivity is online/degraded
    uuid: U8  # (n, 16) raw


@dataclass
class ConnectorCols:
    seq: NDArray[Any]
    charger_seq: NDArray[Any]
    site_seq: NDArray[Any]
    no: NDArray[Any]
    type: NDArray[Any]  # TYPE_CODE
    power_w: NDArray[Any]
    status: NDArray[Any]  # STATUS_CODE
    uuid: U8  # (n, 16) raw


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
class Hits:
    """Matching sites nearest first, and their matching connectors (grouped per site,
    in site order)."""

    sites: I64
    distance_m: NDArray[np.float64]
    counts: I64  # matching connectors per site
    connectors: I64

    def __len__(self) -> int:
        return len(self.sites)


EMPTY_I = np.empty(0, dtype=np.int64)
NO_HITS = Hits(EMPTY_I, np.empty(0, dtype=np.float64), EMPTY_I, EMPTY_I)


# ---- the fixed-width JSON record of one connector -------------------------------------
# {"connector_id":"<uuid>","charger_id":"<uuid>","connector_no":<n>,"type":<t>,
#  "power_kw":<p>,"status":<s>},   — each <…> padded with spaces to a fixed width.
def _padded(values: list[bytes]) -> tuple[U8, int]:
    width = max(len(v) for v in values)
    table = np.frombuffer(b"".join(v.ljust(width) for v in values), dtype=np.uint8)
    return table.reshape(len(values), width), width


TYPE_FIELD, TYPE_W = _padded([msgspec.json.encode(t) for t in CONNECTOR_TYPES])
STATUS_FIELD, STATUS_W = _padded([msgspec.json.encode(s) for s in STATUSES])


@dataclass(frozen=True)
class _Layout:
    width: int
    template: U8
    conn_uuid: int  # column where the connector UUID's 36 characters start
    charger_uuid: int
    no_col: int
    no_w: int
    type_col: int
    power_col: int
    power_w: int
    status_col: int

    @classmethod
    def make(cls, no_w: int, power_w: int) -> _Layout:
        parts: list[tuple[str, bytes]] = [
            ("", b'{"connector_id":"'),
            (
                "conn",
                b"0" * 8 + b"-" + b"0" * 4 + b"-" + b"0" * 4 + b"-" + b"0" * 4 + b"-" + b"0" * 12,
            ),
            ("", b'","charger_id":"'),
            (
                "charger",
                b"0" * 8 + b"-" + b"0" * 4 + b"-" + b"0" * 4 + b"-" + b"0" * 4 + b"-" + b"0" * 12,
            ),
            ("", b'","connector_no":'),
            ("no", b" " * no_w),
            ("", b',"type":'),
            ("type", b" " * TYPE_W),
            ("", b',"power_kw":'),
            ("power", b" " * power_w),
            ("", b',"status":'),
            ("status", b" " * STATUS_W),
            ("", b"},"),
        ]
        cols: dict[str, int] = {}
        at = 0
        for name, text in parts:
            if name:
                cols[name] = at
            at += len(text)
        template = np.frombuffer(b"".join(t for _, t in parts), dtype=np.uint8)
        return cls(
            width=at,
            template=template,
            conn_uuid=cols["conn"],
            charger_uuid=cols["charger"],
            no_col=cols["no"],
            no_w=no_w,
            type_col=cols["type"],
            power_col=cols["power"],
            power_w=power_w,
            status_col=cols["status"],
        )


@dataclass
class FleetIndex:
    # sites, in grid-key order
    site_lat: NDArray[np.float64]
    site_lon: NDArray[np.float64]
    site_xyz: NDArray[np.float64]  # (n, 3) Earth-centred coordinates, see geodesy.py
    site_key: I64
    site_seq: I64
    site_uuid: U8  # (n, 16) raw bytes
    site_static_blob: bytes
    site_static_off: I64
    site_conn_start: I64
    site_conn_end: I64
    # connectors, contiguous per site (ordered by charger, then connector number)
    conn_uuid: U8  # (n, 36) UUID text
    conn_charger: NDArray[np.int32]
    conn_no: NDArray[np.int32]
    conn_power_w: NDArray[np.int32]
    conn_power_code: NDArray[np.int32]  # index into power_field
    conn_type: U8
    conn_status: U8
    # chargers
    charger_uuid: U8  # (n, 36) UUID text
    charger_visible: U8
    # lookups by sequence number and by UUID
    conn_seq_sorted: I64
    conn_seq_pos: I64
    charger_seq_sorted: I64
    charger_seq_pos: I64
    site_uuid_sorted: NDArray[Any]
    site_uuid_pos: I64
    # rendering tables
    no_field: U8
    power_field: U8
    power_values: list[bytes]
    layout: _Layout
    kernel: kernel.BoundKernel | None = field(default=None, repr=False)
    site_prices: Any = field(default=None, repr=False)  # app/discovery/prices.py

    # ---- construction -----------------------------------------------------------------

    @classmethod
    def build(
        cls, sites: list[SiteRow], chargers: list[ChargerRow], connectors: list[ConnectorRow]
    ) -> FleetIndex:
        """From row objects (tests, small fleets); `live.py` loads columns directly."""
        n_ch, n_co = len(chargers), len(connectors)
        charger_cols = ChargerCols(
            seq=np.fromiter((c.charger_seq for c in chargers), np.int64, n_ch),
            visible=np.fromiter(
                (1 if c.state in VISIBLE_STATES else 0 for c in chargers), np.uint8, n_ch
            ),
            uuid=_raw16([c.charger_id for c in chargers]),
        )
        connector_cols = ConnectorCols(
            seq=np.fromiter((c.connector_seq for c in connectors), np.int64, n_co),
            charger_seq=np.fromiter((c.charger_seq for c in connectors), np.int64, n_co),
            site_seq=np.fromiter((c.site_seq for c in connectors), np.int64, n_co),
            no=np.fromiter((c.connector_no for c in connectors), np.int64, n_co),
            type=np.fromiter((TYPE_CODE[c.type] for c in connectors), np.uint8, n_co),
            power_w=np.fromiter((c.power_w for c in connectors), np.int64, n_co),
            status=np.fromiter((STATUS_CODE[c.status] for c in connectors), np.uint8, n_co),
            uuid=_raw16([c.connector_id for c in connectors]),
        )
        return cls.build_columns(sites, charger_cols, connector_cols)

    @classmethod
    def build_columns(
        cls, sites: list[SiteRow], chargers: ChargerCols, connectors: ConnectorCols
    ) -> FleetIndex:
        n_sites = len(sites)
        lat = np.fromiter((s.lat for s in sites), dtype=np.float64, count=n_sites)
        lon = np.fromiter((s.lon for s in sites), dtype=np.float64, count=n_sites)
        keys = grid_key(lat, lon)
        order = np.argsort(keys, kind="stable")
        sites = [sites[i] for i in order.tolist()]
        lat, lon, keys = lat[order], lon[order], keys[order]
        site_seq = np.fromiter((s.site_seq for s in sites), dtype=np.int64, count=n_sites)
        site_seq_order = np.argsort(site_seq)
        site_seq_sorted = site_seq[site_seq_order]

        charger_seq = chargers.seq.astype(np.int64)
        charger_order = np.argsort(charger_seq)
        charger_seq_sorted = charger_seq[charger_order]
        charger_visible = np.ascontiguousarray(chargers.visible, dtype=np.uint8)

        c_seq = connectors.seq.astype(np.int64)
        c_charger_seq = connectors.charger_seq.astype(np.int64)
        c_no = connectors.no.astype(np.int64)
        c_site = _lookup(site_seq_sorted, site_seq_order, connectors.site_seq.astype(np.int64))
        c_charger = _lookup(charger_seq_sorted, charger_order, c_charger_seq)
        known = (c_site >= 0) & (c_charger >= 0)
        # contiguous per site, then by charger and connector number
        keep = np.flatnonzero(known)
        keep = keep[np.lexsort((c_no[keep], c_charger_seq[keep], c_site[keep]))]
        c_site = c_site[keep]
        counts = np.bincount(c_site, minlength=n_sites).astype(np.int64)
        end = np.cumsum(counts)
        start = end - counts

        conn_uuid = _uuid_texts(connectors.uuid[keep])
        power = connectors.power_w.astype(np.int64)[keep]
        powers, power_code = np.unique(power, return_inverse=True)
        power_values = [msgspec.json.encode(float(p) / 1000) for p in powers.tolist()] or [b"0"]
        power_field, power_w = _padded(power_values)
        no = c_no[keep]
        max_no = int(no.max()) if len(no) else 1
        no_field, no_w = _padded([str(i).encode() for i in range(max(max_no, 0) + 1)])
        ctype = connectors.type.astype(np.uint8)[keep]
        status = connectors.status.astype(np.uint8)[keep]

        # One blob + offsets rather than 250k small bytes objects: long-lived small
        # objects scattered among the load's temporaries would pin the allocator's arenas.
        statics = [_site_static(s) for s in sites]
        static_off = np.zeros(n_sites + 1, dtype=np.int64)
        np.cumsum([len(b) for b in statics], out=static_off[1:])
        static_blob = b"".join(statics)
        del statics
        site_uuids = np.array([s.site_id for s in sites], dtype="S16")
        uuid_order = np.argsort(site_uuids)
        conn_seq = c_seq[keep]
        conn_order = np.argsort(conn_seq)
        index = cls(
            site_lat=lat,
            site_lon=lon,
            site_xyz=ecef(lat, lon),
            site_key=keys,
            site_seq=site_seq,
            site_uuid=site_uuids.view(np.uint8).reshape(n_sites, 16),
            site_static_blob=static_blob,
            site_static_off=static_off,
            site_conn_start=start,
            site_conn_end=end,
            conn_uuid=conn_uuid,
            conn_charger=c_charger[keep].astype(np.int32),
            conn_no=no.astype(np.int32),
            conn_power_w=power.astype(np.int32),
            conn_power_code=power_code.astype(np.int32).reshape(-1),
            conn_type=ctype,
            conn_status=status,
            charger_uuid=_uuid_texts(chargers.uuid),
            charger_visible=charger_visible,
            conn_seq_sorted=conn_seq[conn_order],
            conn_seq_pos=conn_order.astype(np.int64),
            charger_seq_sorted=charger_seq_sorted,
            charger_seq_pos=charger_order.astype(np.int64),
            site_uuid_sorted=site_uuids[uuid_order],
            site_uuid_pos=uuid_order.astype(np.int64),
            no_field=no_field,
            power_field=power_field,
            power_values=power_values,
            layout=_Layout.make(no_w, power_w),
        )
        compiled = kernel.load()
        if compiled is not None:
            index.kernel = kernel.BoundKernel(compiled, index, CELL_DEG, NX)
        return index

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

    def site_uuids(self, sites: I64) -> list[bytes]:
        """The raw 16-byte UUIDs of `sites` (one numpy gather, then slices)."""
        raw = self.site_uuid[sites].tobytes()
        return [raw[i : i + 16] for i in range(0, len(raw), 16)]

    # ---- search -----------------------------------------------------------------------

    def candidates(
        self, lat: float, lon: float, radius_m: float
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
        starts = np.searchsorted(self.site_key, lo)
        lens = np.searchsorted(self.site_key, hi) - starts
        idx = _ranges(starts, lens)
        if len(idx) == 0:
            return idx, np.empty(0, dtype=np.float64)
        d = self.site_xyz[idx] - ecef_point(lat, lon)
        dist = chord_to_surface(np.sqrt(np.einsum("ij,ij->i", d, d)))
        inside = dist <= radius_m
        return idx[inside], dist[inside]

    def search(self, q: Query) -> Hits:
        """The nearest `limit` sites with at least one matching live connector (the C
        kernel when it is available, else `search_numpy`; the two agree)."""
        if self.kernel is not None:
            return self.kernel.search(q)
        return self.search_numpy(q)

    def render(self, hits: Hits, q: Query, tails: list[bytes] | bytes) -> bytes:
        """The hits as comma-separated `site` objects of API.md, listing the connectors
        that match `q`; `tails` (one for all, or one per site) close each object (price,
        timeline…)."""
        if self.kernel is not None:
            return self.kernel.render(hits, q, tails)
        return self.render_numpy(hits, tails)

    def search_numpy(self, q: Query) -> Hits:
        """The nearest `limit` sites with at least one matching live connector.

        Searches a small disc first and widens it (×4) until `limit` matches lie inside
        it or the requested radius is reached: every site within the disc is examined, so
        the matches found are the true nearest, and dense cities cost little."""
        r = min(q.radius_m, 1000.0)
        while True:
            hits = self._search_disc(q, r)
            if len(hits) >= q.limit or r >= q.radius_m:
                return hits
            r = min(q.radius_m, r * 4)

    def _search_disc(self, q: Query, r: float) -> Hits:
        idx, dist = self.candidates(q.lat, q.lon, r)
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
            part = self._match(q, idx[done : done + chunk], dist[done : done + chunk], need)
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

    def _match(self, q: Query, idx: I64, dist: NDArray[np.float64], limit: int) -> Hits:
        """Matching connectors of the sites `idx` (ordered by distance); at most `limit`
        sites with a match."""
        start = self.site_conn_start[idx]
        lens = self.site_conn_end[idx] - start
        pos = _ranges(start, lens)
        if len(pos) == 0:
            return NO_HITS
        ok = self.charger_visible[self.conn_charger[pos]].view(np.bool_)
        if q.connector_type is not None:
            ok = ok & (self.conn_type[pos] == q.connector_type)
        if q.min_power_w > 0:
            ok = ok & (self.conn_power_w[pos] >= q.min_power_w)
        if q.available_only:
            ok = ok & (self.conn_status[pos] == AVAILABLE)
        owner = np.repeat(np.arange(len(idx)), lens)[ok]
        pos = pos[ok]
        per_site = np.bincount(owner, minlength=len(idx))
        chosen = np.flatnonzero(per_site)[:limit]
        if len(chosen) == 0:
            return NO_HITS
        take = np.zeros(len(idx), dtype=np.bool_)
        take[chosen] = True
        return Hits(idx[chosen], dist[chosen], per_site[chosen], pos[take[owner]])

    def live_connectors(self, site: int) -> I64:
        pos = np.arange(self.site_conn_start[site], self.site_conn_end[site], dtype=np.int64)
        live: I64 = pos[self.charger_visible[self.conn_charger[pos]] == 1]
        return live

    # ---- rendering --------------------------------------------------------------------

    def render_connectors(self, pos: I64) -> bytes:
        """The connectors at `pos` as fixed-width JSON records, each ending in a comma."""
        lay = self.layout
        out = np.empty((len(pos), lay.width), dtype=np.uint8)
        out[:] = lay.template
        out[:, lay.conn_uuid : lay.conn_uuid + 36] = self.conn_uuid[pos]
        out[:, lay.charger_uuid : lay.charger_uuid + 36] = self.charger_uuid[self.conn_charger[pos]]
        out[:, lay.no_col : lay.no_col + lay.no_w] = self.no_field[self.conn_no[pos]]
        out[:, lay.type_col : lay.type_col + TYPE_W] = TYPE_FIELD[self.conn_type[pos]]
        out[:, lay.power_col : lay.power_col + lay.power_w] = self.power_field[
            self.conn_power_code[pos]
        ]
        out[:, lay.status_col : lay.status_col + STATUS_W] = STATUS_FIELD[self.conn_status[pos]]
        return out.tobytes()

    def render_numpy(self, hits: Hits, tails: list[bytes] | bytes) -> bytes:
        """`render` for hits of `search_numpy` (they carry their connectors)."""
        if len(hits) == 0:
            return b""
        width = self.layout.width
        records = self.render_connectors(hits.connectors)
        available = np.bincount(
            np.repeat(np.arange(len(hits)), hits.counts)[
                self.conn_status[hits.connectors] == AVAILABLE
            ],
            minlength=len(hits),
        )
        blob = self.site_static_blob
        statics = [
            blob[a:b]
            for a, b in zip(
                self.site_static_off[hits.sites].tolist(),
                self.site_static_off[hits.sites + 1].tolist(),
                strict=True,
            )
        ]
        ends = (np.cumsum(hits.counts) * width).tolist()
        starts = [0, *ends[:-1]]
        per_site = [tails] * len(hits) if isinstance(tails, bytes) else tails
        return b",".join(
            [
                b'%b,"distance_m":%.1f,"available_count":%d,"connectors":[%b]%b'
                % (static, d, a, records[at : end - 1], tail)
                for static, d, a, at, end, tail in zip(
                    statics,
                    hits.distance_m.tolist(),
                    available.tolist(),
                    starts,
                    ends,
                    per_site,
                    strict=True,
                )
            ]
        )

    def render_site(self, site: int, connectors: I64, tail: bytes) -> bytes:
        """One `site` object without a distance (site detail); `tail` closes it."""
        records = self.render_connectors(connectors)
        available = int(np.count_nonzero(self.conn_status[connectors] == AVAILABLE))
        off = self.site_static_off
        return b'%b,"distance_m":null,"available_count":%d,"connectors":[%b]%b' % (
            self.site_static_blob[off[site] : off[site + 1]],
            available,
            records[:-1],
            tail,
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


def _raw16(values: list[bytes]) -> U8:
    """(n, 16) uint8 from raw 16-byte UUIDs."""
    return np.array(values, dtype="S16").view(np.uint8).reshape(len(values), 16)


def _uuid_texts(raw: U8) -> U8:
    """(k, 36) UUID text of (k, 16) raw UUIDs. Text, not raw bytes: the 36 MB per million
    costs less than formatting hex on every response."""
    u = raw.reshape(-1, 16)
    digits = np.empty((len(u), 32), dtype=np.uint8)
    digits[:, 0::2] = HEX[u >> 4]
    digits[:, 1::2] = HEX[u & 15]
    text = np.full((len(u), 36), ord("-"), dtype=np.uint8)
    text[:, _HEX_COLS] = digits
    return text


HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# positions of the 32 hex digits inside the 36-character UUID text
_HEX_COLS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)], dtype=np.int64)


def _ranges(starts: I64, lens: I64) -> I64:
    """Concatenated aranges [starts[i], starts[i] + lens[i]) in one vectorised step."""
    total = int(lens.sum())
    if total == 0:
        return EMPTY_I
    shift = np.repeat(starts - (np.cumsum(lens) - lens), lens)
    out: I64 = np.arange(total, dtype=np.int64) + shift
    return out


def _lookup(sorted_keys: I64, positions: NDArray[Any], keys: I64) -> I64:
    """Positions of `keys` via a sorted key array; -1 where absent."""
    if len(sorted_keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    j = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    found = sorted_keys[j] == keys
    out: I64 = np.where(found, positions[j], -1).astype(np.int64)
    return out


def _find(sorted_keys: I64, positions: I64, key: int) -> int | None:
    j = int(np.searchsorted(sorted_keys, key))
    if j < len(sorted_keys) and int(sorted_keys[j]) == key:
        return int(positions[j])
    return None
