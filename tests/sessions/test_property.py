"""Property: for random sessions (1 min – 3 h, any time of day, DST days included,
readings at random instants, parking after charging or not), the receipt equals the
pricing engine's bill of the same meter data with the locked tariff version, and what is
captured at Stripe (localstripe) equals the receipt's total, never above the hold.

The sessions go through the real code: the hold placed for a start at the charger, the
StartTransaction / StatusNotification / StopTransaction handlers (readings arriving as
the late StopTransaction's `transactionData`), the capture job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.chargers import service as chargers
from app.chargers.commands import CommandClient
from app.chargers.service import ChargerIdentity
from app.core.auth import Role
from app.core.db import create_pool
from app.core.settings import Settings
from app.payments.stripe_client import Gateway
from app.payments.tasks import capture_payment, close_stripe
from app.pricing import engine
from app.pricing import service as pricing
from app.pricing.engine import MeterSample
from app.sessions import service as sessions
from tests.factories import auth, charger, import_fleet, site, staff_token
from tests.payments.fixtures import driver_with_card
from tests.sessions.conftest import TARIFF

BERLIN = ZoneInfo("Europe/Berlin")
DAYS = [  # ordinary days and both DST changes of 2026 in Europe/Berlin
    datetime(2026, 3, 28, tzinfo=UTC),
    datetime(2026, 3, 29, tzinfo=UTC),
    datetime(2026, 6, 15, tzinfo=UTC),
    datetime(2026, 10, 25, tzinfo=UTC),
]
HOLD = 5000


@dataclass
class Rig:
    pool: asyncpg.Pool
    ctx: dict[str, Any]
    charger: ChargerIdentity
    connector: tuple[Any, int]
    driver: dict[str, Any]
    tariff_id: str


@pytest.fixture
async def rig(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings, gateway: Gateway
) -> AsyncIterator[Rig]:
    admin = auth(staff_token(settings, roles=(Role.ADMIN,)))
    r = await import_fleet(
        client, admin["Authorization"][7:], [site("S-PROP", chargers=[charger("CP-P1")])]
    )
    assert r.status_code == 200, r.text
    r = await client.post("/admin/v1/tariffs", json=TARIFF, headers=admin)
    tariff_id = r.json()["tariff_id"]
    k = await db.fetchrow(
        "SELECT k.connector_id, k.charger_id, k.site_id FROM connectors k "
        "JOIN chargers c USING (charger_id) WHERE c.charge_point_id = 'CP-P1' AND k.connector_no = 1"
    )
    r = await client.post(
        "/admin/v1/tariff-assignments",
        json={
            "tariff_id": tariff_id,
            "site_id": str(k["site_id"]),
            "effective_from": "2020-01-01T00:00:00Z",
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    driver = await driver_with_card(client, db, settings, phone="+4915188880001")
    pool = await create_pool(settings)
    commands = CommandClient(settings.redis_url, settings.redis_namespace)
    sessions.register(pool, sessions.Runtime(settings=settings, gateway=gateway, commands=commands))
    ctx: dict[str, Any] = {"pool": pool, "settings": settings, "job_try": 1}
    try:
        yield Rig(
            pool,
            ctx,
            ChargerIdentity(k["charger_id"], "CP-P1", None),
            (k["connector_id"], 1),
            driver,
            tariff_id,
        )
    finally:
        sessions.unregister(pool)
        await close_stripe(ctx)
        await commands.close()
        await pool.close()


def _ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def random_sessions(draw: st.DrawFn) -> dict[str, Any]:
    day = draw(st.sampled_from(DAYS))
    start = day + timedelta(minutes=draw(st.integers(0, 24 * 60 - 1)))
    duration = draw(st.integers(60, 3 * 3600))
    end = start + timedelta(seconds=duration)
    energy = draw(st.integers(0, 40_000))
    instants = sorted(set(draw(st.lists(st.integers(1, duration - 1), max_size=12))))
    levels = sorted(
        draw(st.lists(st.integers(0, energy), min_size=len(instants), max_size=len(instants)))
    )
    idle = draw(st.one_of(st.none(), st.integers(1, min(3600, duration - 1))))
    return {
        "start": start,
        "end": end,
        "meter_start": draw(st.integers(0, 5_000_000)),
        "energy": energy,
        "readings": [
            (start + timedelta(seconds=t), wh) for t, wh in zip(instants, levels, strict=True)
        ],
        "charging_end": None if idle is None else end - timedelta(seconds=idle),
    }


@hsettings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(session=random_sessions())
async def test_receipt_is_the_engines_bill_and_capture_is_its_total(
    rig: Rig, session: dict[str, Any]
) -> None:
    pool, driver = rig.pool, rig.driver
    # Each example on a clean connector: examples repeat start instants, and a
    # StartTransaction with the start of an earlier transaction is that one again.
    await pool.execute("DELETE FROM charging_sessions")
    assert (
        await sessions.hold_at_charger(
            pool,
            charger_id=rig.charger.charger_id,
            driver_id=driver["driver_id"],
            connector=rig.connector,
        )
        == "Accepted"
    )
    start, end, meter_start = session["start"], session["end"], session["meter_start"]
    tx, status = await chargers.start_transaction(
        pool,
        rig.charger,
        connector_no=1,
        id_tag=await pool.fetchval(
            "SELECT id_tag FROM drivers WHERE driver_id = $1::uuid", driver["driver_id"]
        ),
        meter_start=meter_start,
        started_at=start,
        reservation_id=None,
    )
    assert status == "Accepted"
    if session["charging_end"] is not None:
        await chargers.status(pool, rig.charger, 1, "SuspendedEV", session["charging_end"])
    data = [
        {"timestamp": _ts(at), "sampled_value": [{"value": str(meter_start + wh), "unit": "Wh"}]}
        for at, wh in session["readings"]
    ]
    await chargers.stop_transaction(
        pool,
        rig.charger,
        transaction_id=tx,
        meter_stop=meter_start + session["energy"],
        stopped_at=end,
        reason="EVDisconnected",
        transaction_data=data,
    )
    row = await pool.fetchrow(
        "SELECT session_id, receipt, total_minor, tariff_version FROM charging_sessions "
        "WHERE transaction_id = $1",
        tx,
    )
    assert row["receipt"] is not None

    # The engine on the same meter data, the tariff version the session locked.
    tariff = await pricing.tariff_version(pool, rig.tariff_id, row["tariff_version"])
    samples = [MeterSample(at=start, energy_wh=0)]
    samples += [MeterSample(at=at, energy_wh=wh) for at, wh in session["readings"]]
    samples.append(MeterSample(at=end, energy_wh=session["energy"]))
    expected = engine.bill(
        tariff,
        BERLIN,
        samples,
        session_start=start,
        charging_end=session["charging_end"] or end,
        session_end=end,
    )
    receipt = row["receipt"]
    assert receipt["total_minor"] == expected.total_minor == row["total_minor"]
    assert (receipt["subtotal_minor"], receipt["vat_minor"]) == (
        expected.subtotal_minor,
        expected.vat_minor,
    )
    assert [(ln["component"], ln["unit_price"], ln["amount_minor"]) for ln in receipt["lines"]] == [
        (ln.component, ln.unit_price, ln.amount_minor) for ln in expected.lines
    ]

    # The capture job; localstripe's PaymentIntent and our row agree with the receipt.
    jobs = await pool.fetch(
        "SELECT outbox_id, args FROM outbox WHERE job = 'capture_payment' AND done_at IS NULL"
    )
    for job in jobs:
        await capture_payment(rig.ctx, job["outbox_id"], **job["args"])
    paid = await pool.fetch(
        "SELECT kind, amount_minor, captured_minor, status FROM payments WHERE session_id = $1",
        row["session_id"],
    )
    assert [p["kind"] for p in paid] == ["hold"]
    assert paid[0]["amount_minor"] == HOLD
    captured = sum(p["captured_minor"] for p in paid)
    assert captured == receipt["total_minor"] <= HOLD
    assert paid[0]["status"] == ("canceled" if captured == 0 else "succeeded")
