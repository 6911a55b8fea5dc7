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

This module holds the arrays and builds them; the rest lives beside it:
`columns.py` (codes, rows, columns, Query/Hits), `updates.py` (live deltas in place),
`search.py` and `render.py` (the numpy search and JSON rendering, the reference), and
`kernel.py` (the C kernel bound to an index, used by `search`/`render` when built).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from app.discovery import kernel, render, search
from app.discovery.columns import (
    CELL_DEG,
    I64,
    NX,
    STATUS_CODE,
    TYPE_CODE,
    U8,
    VISIBLE_STATES,
    ChargerCols,
    ChargerRow,
    ConnectorCols,
    ConnectorRow,
    Hits,
    Query,
    SiteRow,
    grid_key,
    lookup,
    raw16,
    site_static,
    uuid_texts,
)
from app.discovery.geodesy import ecef


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
    layout: render.Layout
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
            uuid=raw16([c.charger_id for c in chargers]),
        )
        connector_cols = ConnectorCols(
            seq=np.fromiter((c.connector_seq for c in connectors), np.int64, n_co),
            charger_seq=np.fromiter((c.charger_seq for c in connectors), np.int64, n_co),
            site_seq=np.fromiter((c.site_seq for c in connectors), np.int64, n_co),
            no=np.fromiter((c.connector_no for c in connectors), np.int64, n_co),
            type=np.fromiter((TYPE_CODE[c.type] for c in connectors), np.uint8, n_co),
            power_w=np.fromiter((c.power_w for c in connectors), np.int64, n_co),
            status=np.fromiter((STATUS_CODE[c.status] for c in connectors), np.uint8, n_co),
            uuid=raw16([c.connector_id for c in connectors]),
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
        c_site = lookup(site_seq_sorted, site_seq_order, connectors.site_seq.astype(np.int64))
        c_charger = lookup(charger_seq_sorted, charger_order, c_charger_seq)
        known = (c_site >= 0) & (c_charger >= 0)
        # contiguous per site, then by charger and connector number
        keep = np.flatnonzero(known)
        keep = keep[np.lexsort((c_no[keep], c_charger_seq[keep], c_site[keep]))]
        c_site = c_site[keep]
        counts = np.bincount(c_site, minlength=n_sites).astype(np.int64)
        end = np.cumsum(counts)
        start = end - counts

        conn_uuid = uuid_texts(connectors.uuid[keep])
        power = connectors.power_w.astype(np.int64)[keep]
        powers, power_code = np.unique(power, return_inverse=True)
        power_values = [msgspec.json.encode(float(p) / 1000) for p in powers.tolist()] or [b"0"]
        power_field, power_w = render.padded(power_values)
        no = c_no[keep]
        max_no = int(no.max()) if len(no) else 1
        no_field, no_w = render.padded([str(i).encode() for i in range(max(max_no, 0) + 1)])
        ctype = connectors.type.astype(np.uint8)[keep]
        status = connectors.status.astype(np.uint8)[keep]

        # One blob + offsets rather than 250k small bytes objects: long-lived small
        # objects scattered among the load's temporaries would pin the allocator's arenas.
        statics = [site_static(s) for s in sites]
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
            charger_uuid=uuid_texts(chargers.uuid),
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
            layout=render.Layout.make(no_w, power_w),
        )
        compiled = kernel.load()
        if compiled is not None:
            index.kernel = kernel.BoundKernel(compiled, index, CELL_DEG, NX)
        return index

    @property
    def connector_count(self) -> int:
        return len(self.conn_status)

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

    def search(self, q: Query) -> Hits:
        """The nearest `limit` sites with at least one matching live connector (the C
        kernel when it is available, else `search.nearest`; the two agree)."""
        if self.kernel is not None:
            return self.kernel.search(q)
        return search.nearest(self, q)

    def render(self, hits: Hits, q: Query, tails: list[bytes] | bytes) -> bytes:
        """The hits as comma-separated `site` objects of API.md, listing the connectors
        that match `q`; `tails` (one for all, or one per site) close each object (price,
        timeline…)."""
        if self.kernel is not None:
            return self.kernel.render(hits, q, tails)
        return render.nearby_sites(self, hits, tails)
