"""What the fleet index is made of: codes, rows and columns, queries and hits.

The index itself (app/discovery/index.py) keeps these as compact numpy arrays; live.py
loads them (rows for sites, binary-COPY columns for chargers and connectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

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


def uuid_text(raw: bytes) -> bytes:
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


def site_static(s: SiteRow) -> bytes:
    return (
        b'{"site_id":"'
        + uuid_text(s.site_id)
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


def raw16(values: list[bytes]) -> U8:
    """(n, 16) uint8 from raw 16-byte UUIDs."""
    return np.array(values, dtype="S16").view(np.uint8).reshape(len(values), 16)


def uuid_texts(raw: U8) -> U8:
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


def ranges(starts: I64, lens: I64) -> I64:
    """Concatenated aranges [starts[i], starts[i] + lens[i]) in one vectorised step."""
    total = int(lens.sum())
    if total == 0:
        return EMPTY_I
    shift = np.repeat(starts - (np.cumsum(lens) - lens), lens)
    out: I64 = np.arange(total, dtype=np.int64) + shift
    return out


def lookup(sorted_keys: I64, positions: NDArray[Any], keys: I64) -> I64:
    """Positions of `keys` via a sorted key array; -1 where absent."""
    if len(sorted_keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    j = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    found = sorted_keys[j] == keys
    out: I64 = np.where(found, positions[j], -1).astype(np.int64)
    return out


def find(sorted_keys: I64, positions: I64, key: int) -> int | None:
    j = int(np.searchsorted(sorted_keys, key))
    if j < len(sorted_keys) and int(sorted_keys[j]) == key:
        return int(positions[j])
    return None
