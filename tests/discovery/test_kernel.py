"""The C kernel of nearby search agrees with the numpy reference implementation on random
fleets and queries: same sites in the same order, same distances, same JSON — including
after live status/connectivity deltas, with per-site tails, and for responses larger than
the kernel's initial output buffer. Where the kernel must exist (REQUIRE_KERNEL=1, as `make
test` sets it, or CI) a missing build fails these tests instead of skipping them."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from typing import Any

import msgspec
import numpy as np
import pytest

from app.core.settings import ROOT
from app.discovery import kernel, render, search, updates
from app.discovery.columns import (
    CONNECTOR_TYPES,
    STATUSES,
    ChargerRow,
    ConnectorRow,
    Query,
    SiteRow,
)
from app.discovery.index import FleetIndex

MUST_EXIST = kernel.required() or bool(os.environ.get("CI"))


@pytest.fixture(autouse=True)
def compiled_kernel() -> kernel.Kernel:
    try:
        compiled = kernel.load()
    except kernel.KernelUnavailable as exc:
        pytest.fail(str(exc))
    if compiled is None:
        if MUST_EXIST:
            pytest.fail("the nearby-search kernel is not built (make builds it)")
        pytest.skip("the nearby-search kernel is not built: run make")
    return compiled


# Dense city, a high-latitude town, both sides of the antimeridian, the equator.
CENTRES = [(52.52, 13.40), (78.22, 15.65), (-16.5, 179.95), (-16.5, -179.95), (0.0, 0.0)]


def random_fleet(rnd: random.Random, n_sites: int) -> FleetIndex:
    sites: list[SiteRow] = []
    chargers: list[ChargerRow] = []
    connectors: list[ConnectorRow] = []
    for s in range(1, n_sites + 1):
        lat, lon = rnd.choice(CENTRES)
        lat += rnd.gauss(0, 0.05)
        lon = (lon + rnd.gauss(0, 0.08) + 180) % 360 - 180
        sites.append(SiteRow(s, rnd.randbytes(16), f'Site {s} "ü"', f"Street {s}", lat, lon, "UTC"))
        for _ in range(rnd.choice([0, 1, 1, 2, 3])):
            c = len(chargers) + 1
            state = rnd.choice(["online", "online", "degraded", "offline", "quarantined"])
            chargers.append(ChargerRow(c, rnd.randbytes(16), s, state))
            for no in range(1, rnd.choice([1, 2, 2, 4]) + 1):
                connectors.append(
                    ConnectorRow(
                        len(connectors) + 1,
                        rnd.randbytes(16),
                        c,
                        s,
                        no,
                        rnd.choice(CONNECTOR_TYPES),
                        rnd.choice([3700, 11000, 22000, 50000, 150000, 350000]),
                        rnd.choice(STATUSES),
                    )
                )
    return FleetIndex.build(sites, chargers, connectors)


def random_query(rnd: random.Random) -> Query:
    lat, lon = rnd.choice(CENTRES)
    return Query(
        lat=lat + rnd.gauss(0, 0.05),
        lon=(lon + rnd.gauss(0, 0.08) + 180) % 360 - 180,
        radius_m=rnd.choice([1.0, 300.0, 2000.0, 5000.0, 50_000.0]),
        limit=rnd.choice([1, 5, 20, 100]),
        connector_type=rnd.choice([None, None, 0, 2]),
        min_power_w=rnd.choice([0, 0, 22000, 150000]),
        available_only=rnd.random() < 0.3,
    )


def both(index: FleetIndex, q: Query, tails: list[bytes] | bytes) -> tuple[Any, Any]:
    fast = index.search(q)
    fast_json = index.render(fast, q, tails if isinstance(tails, bytes) else tails[: len(fast)])
    ref = search.nearest(index, q)
    ref_json = render.nearby_sites(
        index, ref, tails if isinstance(tails, bytes) else tails[: len(ref)]
    )
    assert fast.sites.tolist() == ref.sites.tolist(), q
    assert np.allclose(fast.distance_m, ref.distance_m, rtol=0, atol=1e-6)
    assert fast.counts.tolist() == ref.counts.tolist()
    return (
        msgspec.json.decode(b"[" + fast_json + b"]"),
        msgspec.json.decode(b"[" + ref_json + b"]"),
    )


def test_kernel_matches_numpy_reference_on_random_fleets() -> None:
    rnd = random.Random(7)
    index = random_fleet(rnd, 3000)
    assert index.kernel is not None
    tail = b',"price":null}'
    for _ in range(400):
        fast, ref = both(index, random_query(rnd), tail)
        assert fast == ref


def test_kernel_follows_deltas_and_per_site_tails() -> None:
    rnd = random.Random(11)
    index = random_fleet(rnd, 2000)
    for _ in range(200):
        for _ in range(20):  # statuses and connectivity change between searches
            updates.set_connector_status(
                index, rnd.randrange(1, index.connector_count + 1), rnd.choice(STATUSES)
            )
            updates.set_charger_state(
                index,
                rnd.randrange(1, len(index.charger_visible) + 1),
                rnd.choice(["online", "offline"]),
            )
        tails = [b',"price":{"n":%d}}' % i for i in range(100)]
        fast, ref = both(index, random_query(rnd), tails)
        assert fast == ref
        assert [s["price"]["n"] for s in fast] == list(range(len(fast)))


def test_a_response_larger_than_the_output_buffer_is_rendered_whole() -> None:
    rnd = random.Random(3)
    conns = [
        ConnectorRow(i, rnd.randbytes(16), 1 + i % 50, 1, 1 + i // 50, "CCS2", 150000, "AVAILABLE")
        for i in range(1, 3001)
    ]
    chargers = [ChargerRow(c, rnd.randbytes(16), 1, "online") for c in range(1, 51)]
    index = FleetIndex.build(
        [SiteRow(1, rnd.randbytes(16), "Hub", "A", 48.1, 11.5, "UTC")], chargers, conns
    )
    q = Query(lat=48.1, lon=11.5, radius_m=100, limit=1)
    fast, ref = both(index, q, b"}")
    assert len(fast[0]["connectors"]) == 3000
    assert fast == ref
    assert fast[0]["available_count"] == 3000


def test_an_array_of_the_wrong_type_is_refused(compiled_kernel: kernel.Kernel) -> None:
    index = random_fleet(random.Random(5), 20)
    index.conn_no = index.conn_no.astype(np.int64)  # nearby.h says const int32_t *
    with pytest.raises(TypeError, match="conn_no"):
        kernel.BoundKernel(compiled_kernel, index, 0.01, 36000)


UNBUILT = """
import sys
sys.modules["app.discovery._nearby"] = None  # as if never built
from app.discovery import kernel
try:
    kernel.load()
except kernel.KernelUnavailable as exc:
    print("refused:", exc)
else:
    print("fell back")
"""


@pytest.mark.parametrize(("required", "outcome"), [("1", "refused:"), ("0", "fell back")])
def test_require_kernel_refuses_the_numpy_fallback(required: str, outcome: str) -> None:
    env = {**os.environ, "REQUIRE_KERNEL": required}
    done = subprocess.run(
        [sys.executable, "-c", UNBUILT], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(outcome), done.stdout
