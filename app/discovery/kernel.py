"""The C kernel of nearby search (nearby.c), bound to one FleetIndex.

The kernel is the extension module ``app.discovery._nearby``, built at install time by
cffi (app/discovery/kernel_build.py; ``make`` runs it after installing the lock file) —
never compiled on import. Its structs are declared once, in nearby.h: cffi compiled the
module against that header, so the field names, types and offsets used here are the C
compiler's. Each pointer field is filled by name from a numpy array whose dtype is
checked against the header's pointee type.

Calls go through ``ctypes.PyDLL`` on the same shared object, which keeps the GIL for the
~20 µs of a search: cffi's own wrappers release and re-take it around every call, which
hands it to any other thread (the index rebuild runs in one) twice per request.

Without the module the index falls back to its numpy implementation (same results, ~3×
slower) with a warning — unless ``REQUIRE_KERNEL=1`` (``make run``, ``make test``), which
turns a missing or broken build into an error. ``KERNEL_DISABLED=1`` forces the fallback.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
from functools import cache
from typing import TYPE_CHECKING, Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from app.discovery.columns import CONNECTOR_TYPES, EMPTY_I, STATUSES, Hits, Query

if TYPE_CHECKING:
    from app.discovery.index import FleetIndex

log = logging.getLogger("app.discovery")

MODULE: Final = "app.discovery._nearby"
MAX_HITS: Final = 100  # API.md: limit ≤ 100

# numpy dtype of each C type a pointer field of nearby.h points to
_DTYPES: Final = {
    "int64_t": np.dtype(np.int64),
    "int32_t": np.dtype(np.int32),
    "uint8_t": np.dtype(np.uint8),
    "double": np.dtype(np.float64),
}
P = ctypes.c_void_p


class KernelUnavailable(RuntimeError):
    """REQUIRE_KERNEL=1 and the compiled kernel cannot be used."""


class Kernel:
    """The compiled module: cffi's view of nearby.h and the two entry points."""

    def __init__(self, module: Any) -> None:
        self.ffi = module.ffi
        self.file = str(module.__file__)
        lib = ctypes.PyDLL(self.file)
        lib.vw_search.restype = ctypes.c_int64
        lib.vw_search.argtypes = [P, P, P, P, P]
        lib.vw_render.restype = ctypes.c_int64
        lib.vw_render.argtypes = [P, P, ctypes.c_int64, P, P, P]
        lib.vw_render.argtypes += [ctypes.c_char_p, ctypes.c_int64, ctypes.c_int32, P]
        lib.vw_render.argtypes += [ctypes.c_int64]
        self.search = lib.vw_search
        self.render = lib.vw_render
        self.fields: dict[str, Any] = dict(self.ffi.typeof("Index").fields)

    def address(self, cdata: Any) -> int:
        return int(self.ffi.cast("uintptr_t", cdata))


def required() -> bool:
    return os.environ.get("REQUIRE_KERNEL") == "1"


@cache
def load() -> Kernel | None:
    """The compiled kernel, or None (numpy fallback) when it is not built."""
    if os.environ.get("KERNEL_DISABLED") == "1":
        if required():
            raise KernelUnavailable("KERNEL_DISABLED=1 contradicts REQUIRE_KERNEL=1")
        return None
    try:
        return Kernel(importlib.import_module(MODULE))
    except (ImportError, OSError, AttributeError) as exc:
        if required():
            raise KernelUnavailable(
                f"nearby-search kernel {MODULE} not usable ({exc!r}); build it with "
                "`make` (python setup.py build_ext --inplace)"
            ) from exc
        log.warning("nearby-search C kernel unavailable (%r); using numpy", exc)
        return None


class BoundKernel:
    """The kernel bound to one index: an ``Index`` struct of pointers into the index's
    arrays (the arrays deltas write to, so statuses stay live) plus reusable output
    buffers."""

    def __init__(self, kernel: Kernel, ix: FleetIndex, cell_deg: float, nx: int) -> None:
        self.kernel = kernel
        ffi = kernel.ffi
        self.keep: list[Any] = []  # everything the struct points into
        self.struct = ffi.new("Index *")

        def point(name: str, a: NDArray[Any]) -> None:
            ctype = kernel.fields[name].type
            want = _DTYPES[ctype.item.cname]
            if a.dtype != want or not a.flags.c_contiguous:
                raise TypeError(f"Index.{name} ({ctype.cname}) needs contiguous {want}: {a.dtype}")
            self.keep.append(a)
            setattr(self.struct, name, ffi.cast(ctype, a.ctypes.data))

        def text(name: str, values: list[bytes]) -> None:
            off = np.zeros(len(values) + 1, dtype=np.int64)
            np.cumsum([len(v) for v in values], out=off[1:])
            point(f"{name}_text", np.frombuffer(b"".join(values) or b" ", dtype=np.uint8))
            point(f"{name}_off", off)

        n_sites = len(ix.site_key)
        s = self.struct
        s.n_sites = n_sites
        s.cell_deg = cell_deg
        s.nx = nx
        point("site_key", ix.site_key)
        point("site_xyz", ix.site_xyz)
        point("conn_start", ix.site_conn_start)
        point("conn_end", ix.site_conn_end)
        point("static_blob", np.frombuffer(ix.site_static_blob or b" ", dtype=np.uint8))
        point("static_off", ix.site_static_off)
        for name in ("charger", "type", "status", "power_w", "no", "power_code", "uuid"):
            point(f"conn_{name}", getattr(ix, f"conn_{name}"))
        point("charger_uuid", ix.charger_uuid)
        point("charger_visible", ix.charger_visible)
        text("type", [msgspec.json.encode(t) for t in CONNECTOR_TYPES])
        text("status", [msgspec.json.encode(t) for t in STATUSES])
        text("power", ix.power_values)
        point("cand_site", np.empty(max(n_sites, 1), dtype=np.int64))
        point("cand_dist", np.empty(max(n_sites, 1), dtype=np.float64))
        unset = [f for f, info in kernel.fields.items() if info.type.kind == "pointer"]
        unset = [f for f in unset if getattr(s, f) == ffi.NULL]
        if unset:
            raise TypeError(f"Index fields not bound: {', '.join(unset)}")

        self.struct_p = kernel.address(self.struct)
        self.query = ffi.new("Query *")
        self.query_p = kernel.address(self.query)
        self.site = np.empty(MAX_HITS, dtype=np.int64)
        self.dist = np.empty(MAX_HITS, dtype=np.float64)
        self.count = np.empty(MAX_HITS, dtype=np.int64)
        self.out_p = (self.site.ctypes.data, self.dist.ctypes.data, self.count.ctypes.data)
        self.buf = np.empty(1 << 18, dtype=np.uint8)
        self.buf_p = (self.buf.ctypes.data, len(self.buf))
        self.last: Hits | None = None

    def _set(self, q: Query) -> None:
        qs = self.query
        qs.lat = q.lat
        qs.lon = q.lon
        qs.radius_m = q.radius_m
        qs.limit = min(q.limit, MAX_HITS)
        qs.connector_type = -1 if q.connector_type is None else q.connector_type
        qs.min_power_w = q.min_power_w
        qs.available_only = 1 if q.available_only else 0

    def search(self, q: Query) -> Hits:
        self._set(q)
        n = self.kernel.search(self.struct_p, self.query_p, *self.out_p)
        if n < 0:
            raise MemoryError("nearby search kernel")
        hits = Hits(self.site[:n].copy(), self.dist[:n].copy(), self.count[:n].copy(), EMPTY_I)
        self.last = hits  # its arrays are still in self.site/dist/count for render()
        return hits

    def render(self, hits: Hits, q: Query, tails: list[bytes] | bytes) -> bytes:
        n = len(hits)
        if n == 0:
            return b""
        if hits is not self.last:
            self.site[:n], self.dist[:n], self.count[:n] = hits.sites, hits.distance_m, hits.counts
        if not isinstance(tails, bytes) and tails.count(tails[0]) == len(tails):
            tails = tails[0]  # one price for every site: no per-site tails to pass
        shared = isinstance(tails, bytes)
        blob = tails if isinstance(tails, bytes) else b"\0".join(tails)
        self._set(q)
        while True:
            written = self.kernel.render(
                self.struct_p, self.query_p, n, *self.out_p, blob, len(blob), shared, *self.buf_p
            )
            if written >= 0:
                return self.buf[:written].tobytes()
            self.buf = np.empty(-written * 2, dtype=np.uint8)
            self.buf_p = (self.buf.ctypes.data, len(self.buf))
