"""Loads the C kernel of nearby search (`_nearby.c`), compiling it on first use.

The shared object is built with the system C compiler (`$CC`, else the one Python was
built with, else `cc`) into `app/discovery/_nearby.<hash of the source>.so`, atomically, so
concurrent workers and a changed source never load a stale build. Without a compiler the
index falls back to its numpy implementation (same results, ~3× slower; a warning is
logged). `KERNEL_DISABLED=1` forces the fallback.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shlex
import subprocess
import sysconfig
import tempfile
from functools import cache
from pathlib import Path

log = logging.getLogger("app.discovery")
SOURCE = Path(__file__).with_name("_nearby.c")

P = ctypes.c_void_p


class IndexStruct(ctypes.Structure):
    _fields_ = [
        ("n_sites", ctypes.c_int64),
        ("site_key", P),
        ("site_xyz", P),
        ("conn_start", P),
        ("conn_end", P),
        ("static_blob", P),
        ("static_off", P),
        ("conn_charger", P),
        ("conn_type", P),
        ("conn_status", P),
        ("conn_power_w", P),
        ("conn_no", P),
        ("conn_power_code", P),
        ("conn_uuid", P),
        ("charger_uuid", P),
        ("charger_visible", P),
        ("type_text", P),
        ("type_off", P),
        ("status_text", P),
        ("status_off", P),
        ("power_text", P),
        ("power_off", P),
        ("cell_deg", ctypes.c_double),
        ("nx", ctypes.c_int64),
        ("cand_site", P),
        ("cand_dist", P),
    ]


class QueryStruct(ctypes.Structure):
    _fields_ = [
        ("lat", ctypes.c_double),
        ("lon", ctypes.c_double),
        ("radius_m", ctypes.c_double),
        ("limit", ctypes.c_int64),
        ("connector_type", ctypes.c_int32),
        ("min_power_w", ctypes.c_int32),
        ("available_only", ctypes.c_int32),
    ]


def _compiler() -> list[str]:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)[:1]


def _build() -> Path:
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    target = SOURCE.with_name(f"_nearby.{digest}.so")
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(dir=SOURCE.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        cmd = [*_compiler(), "-O2", "-shared", "-fPIC", "-o", tmp, str(SOURCE), "-lm"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)  # noqa: S603 (our own argv)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@cache
def load() -> ctypes.PyDLL | None:
    """The kernel library, or None (numpy fallback) when it cannot be built."""
    if os.environ.get("KERNEL_DISABLED") == "1":
        return None
    try:
        lib = ctypes.PyDLL(str(_build()))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nearby-search C kernel unavailable (%r); using numpy", exc)
        return None
    lib.vw_search.restype = ctypes.c_int64
    lib.vw_search.argtypes = [P, P, P, P, P]
    lib.vw_render.restype = ctypes.c_int64
    lib.vw_render.argtypes = [
        P,
        P,
        ctypes.c_int64,
        P,
        P,
        P,
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.c_int32,
        P,
        ctypes.c_int64,
    ]
    return lib
