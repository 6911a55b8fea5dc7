"""The index's answers as API.md JSON, with numpy (the C kernel's reference).

Connectors are rendered in one go into fixed-width JSON records (values padded with JSON
whitespace), so the cost of a response hardly depends on how many connectors it lists.
Statuses are read at render time, so a delta is visible in the next response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from app.discovery.columns import AVAILABLE, CONNECTOR_TYPES, I64, STATUSES, U8, Hits

if TYPE_CHECKING:
    from app.discovery.index import FleetIndex


# ---- the fixed-width JSON record of one connector -------------------------------------
# {"connector_id":"<uuid>","charger_id":"<uuid>","connector_no":<n>,"type":<t>,
#  "power_kw":<p>,"status":<s>},   — each <…> padded with spaces to a fixed width.
def padded(values: list[bytes]) -> tuple[U8, int]:
    width = max(len(v) for v in values)
    table = np.frombuffer(b"".join(v.ljust(width) for v in values), dtype=np.uint8)
    return table.reshape(len(values), width), width


TYPE_FIELD, TYPE_W = padded([msgspec.json.encode(t) for t in CONNECTOR_TYPES])
STATUS_FIELD, STATUS_W = padded([msgspec.json.encode(s) for s in STATUSES])


@dataclass(frozen=True)
class Layout:
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
    def make(cls, no_w: int, power_w: int) -> Layout:
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


def connector_records(ix: FleetIndex, pos: I64) -> bytes:
    """The connectors at `pos` as fixed-width JSON records, each ending in a comma."""
    lay = ix.layout
    out = np.empty((len(pos), lay.width), dtype=np.uint8)
    out[:] = lay.template
    out[:, lay.conn_uuid : lay.conn_uuid + 36] = ix.conn_uuid[pos]
    out[:, lay.charger_uuid : lay.charger_uuid + 36] = ix.charger_uuid[ix.conn_charger[pos]]
    out[:, lay.no_col : lay.no_col + lay.no_w] = ix.no_field[ix.conn_no[pos]]
    out[:, lay.type_col : lay.type_col + TYPE_W] = TYPE_FIELD[ix.conn_type[pos]]
    out[:, lay.power_col : lay.power_col + lay.power_w] = ix.power_field[ix.conn_power_code[pos]]
    out[:, lay.status_col : lay.status_col + STATUS_W] = STATUS_FIELD[ix.conn_status[pos]]
    return out.tobytes()


def nearby_sites(ix: FleetIndex, hits: Hits, tails: list[bytes] | bytes) -> bytes:
    """`FleetIndex.render` for hits of `search.nearest` (they carry their connectors)."""
    if len(hits) == 0:
        return b""
    width = ix.layout.width
    records = connector_records(ix, hits.connectors)
    available = np.bincount(
        np.repeat(np.arange(len(hits)), hits.counts)[ix.conn_status[hits.connectors] == AVAILABLE],
        minlength=len(hits),
    )
    blob = ix.site_static_blob
    statics = [
        blob[a:b]
        for a, b in zip(
            ix.site_static_off[hits.sites].tolist(),
            ix.site_static_off[hits.sites + 1].tolist(),
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


def site_detail(ix: FleetIndex, site: int, connectors: I64, tail: bytes) -> bytes:
    """One `site` object without a distance (site detail); `tail` closes it."""
    records = connector_records(ix, connectors)
    available = int(np.count_nonzero(ix.conn_status[connectors] == AVAILABLE))
    off = ix.site_static_off
    return b'%b,"distance_m":null,"available_count":%d,"connectors":[%b]%b' % (
        ix.site_static_blob[off[site] : off[site + 1]],
        available,
        records[:-1],
        tail,
    )
