"""Usage analytics over real sessions rows: counts, energy, utilisation by site, local hour
and local day (DST included), revenue of billed sessions, CSV export, roles."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from tests.factories import auth, charger, import_fleet, site, staff_token

USAGE = "/admin/v1/analytics/usage"
# A Sunday in July (CEST, UTC+2) and the autumn DST change in Berlin (25 h day).
JULY = datetime(2026, 7, 5, tzinfo=UTC)
FALL_BACK_DAY = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 2026-10-25 00:00 CEST


async def _fleet(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> dict[tuple[str, int], tuple[uuid.UUID, uuid.UUID]]:
    """Two Berlin sites: A with one charger of two connectors, B with one connector; all
    connectors created long before the periods the tests look at."""
    token = staff_token(settings, roles=(Role.ADMIN,))
    one = [{"connector_no": 1, "type": "CCS2", "power_kw": 150}]
    r = await import_fleet(
        client,
        token,
        [
            site("a", name="Alpha", chargers=[charger("CP-A")]),
            site("b", name="Bravo", chargers=[charger("CP-B", connectors=one)]),
        ],
    )
    assert r.status_code == 200, r.text
    await db.execute("UPDATE connectors SET created_at = '2026-01-01T00:00:00Z'")
    rows = await db.fetch(
        """SELECT c.charge_point_id, c.charger_id, k.connector_id, k.connector_no
           FROM chargers c JOIN connectors k USING (charger_id)"""
    )
    return {
        (r["charge_point_id"], r["connector_no"]): (r["charger_id"], r["connector_id"])
        for r in rows
    }


async def _session(
    db: asyncpg.Connection,
    ids: tuple[uuid.UUID, uuid.UUID],
    connector_no: int,
    start: datetime,
    end: datetime | None,
    *,
    wh: int = 10_000,
    status: str = "COMPLETED",
) -> uuid.UUID:
    return await db.fetchval(  # type: ignore[no-any-return]
        """INSERT INTO charging_sessions (charger_id, connector_id, connector_no, id_tag,
               id_tag_status, status, meter_start_wh, meter_stop_wh, energy_wh,
               started_at, ended_at)
           VALUES ($1, $2, $3, 'TAG', 'Accepted', $4, 0, $5, $5, $6, $7)
           RETURNING session_id""",
        ids[0],
        ids[1],
        connector_no,
        status,
        wh,
        start,
        end,
    )


def _q(**kw: str) -> dict[str, str]:
    return kw


async def test_no_sessions_answers_zeros_with_availability(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    await _fleet(client, db, settings)
    token = staff_token(settings, roles=(Role.VIEWER,))
    r = await client.get(
        USAGE,
        params=_q(
            **{"from": "2026-07-05T00:00:00Z", "to": "2026-07-06T00:00:00Z", "group_by": "site"}
        ),
        headers=auth(token),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"]["sessions"] == 0
    assert body["totals"]["available_h"] == pytest.approx(3 * 24)
    assert body["totals"]["utilisation"] == 0
    assert [i["label"] for i in body["items"]] == ["Alpha", "Bravo"]
    assert body["items"][0]["available_h"] == pytest.approx(48)


async def test_by_site_hour_and_day(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    ids = await _fleet(client, db, settings)
    a1, a2, b1 = ids[("CP-A", 1)], ids[("CP-A", 2)], ids[("CP-B", 1)]
    # 17:30–19:10 Berlin time on A1, 18:00–19:00 on A2, 09:00–10:00 on B; a failed one.
    await _session(
        db,
        a1,
        1,
        JULY + timedelta(hours=15, minutes=30),
        JULY + timedelta(hours=17, minutes=10),
        wh=20_000,
    )
    await _session(db, a2, 2, JULY + timedelta(hours=16), JULY + timedelta(hours=17), wh=5_500)
    await _session(db, b1, 1, JULY + timedelta(hours=7), JULY + timedelta(hours=8), wh=7_000)
    await _session(
        db, b1, 1, JULY + timedelta(hours=9), JULY + timedelta(hours=10), status="FAILED"
    )
    token = staff_token(settings, roles=(Role.OPERATOR,))
    day = {"from": "2026-07-04T22:00:00Z", "to": "2026-07-05T22:00:00Z"}  # 5 July, Berlin

    r = await client.get(USAGE, params={**day, "group_by": "site"}, headers=auth(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"]["sessions"] == 3
    assert body["totals"]["energy_kwh"] == pytest.approx(32.5)
    occupied = 100 / 60 + 1 + 1
    assert body["totals"]["occupied_h"] == pytest.approx(occupied, abs=1e-3)
    assert body["totals"]["utilisation"] == pytest.approx(occupied / 72, abs=1e-5)
    alpha, bravo = body["items"]
    assert (alpha["label"], alpha["sessions"], alpha["energy_kwh"]) == ("Alpha", 2, 25.5)
    assert alpha["utilisation"] == pytest.approx((100 / 60 + 1) / 48, abs=1e-5)
    assert (bravo["sessions"], bravo["occupied_h"]) == (1, 1)

    r = await client.get(USAGE, params={**day, "group_by": "hour"}, headers=auth(token))
    hours = {i["key"]: i for i in r.json()["items"]}
    assert len(hours) == 24
    assert hours["17"]["sessions"] == 1
    assert hours["17"]["occupied_h"] == pytest.approx(0.5)
    assert hours["18"]["sessions"] == 1
    assert hours["18"]["occupied_h"] == pytest.approx(2)
    assert hours["19"]["occupied_h"] == pytest.approx(10 / 60, abs=1e-3)
    assert hours["09"]["sessions"] == 1
    assert hours["18"]["available_h"] == pytest.approx(3)
    assert hours["18"]["utilisation"] == pytest.approx(2 / 3, abs=1e-5)

    r = await client.get(USAGE, params={**day, "group_by": "day"}, headers=auth(token))
    days = r.json()["items"]
    assert [d["key"] for d in days] == ["2026-07-05"]
    assert days[0]["sessions"] == 3
    assert days[0]["available_h"] == pytest.approx(72)


async def test_fall_back_day_has_25_hours_and_hour_two_twice(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    ids = await _fleet(client, db, settings)
    # 02:00–03:00 CEST then 02:00–03:00 CET: one session over the whole repeated hour.
    await _session(
        db,
        ids[("CP-B", 1)],
        1,
        datetime(2026, 10, 25, 0, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 2, 0, tzinfo=UTC),
    )
    token = staff_token(settings, roles=(Role.ADMIN,))
    period = {
        "from": FALL_BACK_DAY.isoformat(),
        "to": (FALL_BACK_DAY + timedelta(hours=25)).isoformat(),
    }
    r = await client.get(USAGE, params={**period, "group_by": "day"}, headers=auth(token))
    (day,) = r.json()["items"]
    assert day["key"] == "2026-10-25"
    assert day["available_h"] == pytest.approx(3 * 25)
    r = await client.get(USAGE, params={**period, "group_by": "hour"}, headers=auth(token))
    hours = {i["key"]: i for i in r.json()["items"]}
    assert hours["02"]["available_h"] == pytest.approx(6)  # the hour happened twice
    assert hours["02"]["occupied_h"] == pytest.approx(2)
    assert hours["03"]["available_h"] == pytest.approx(3)


async def test_open_session_occupies_until_now_and_csv(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    ids = await _fleet(client, db, settings)
    now = datetime.now(UTC)
    await _session(db, ids[("CP-A", 1)], 1, now - timedelta(hours=2), None, wh=3_000)
    token = staff_token(settings, roles=(Role.PRICING_ADMIN,))
    params = {
        "from": (now - timedelta(days=1)).isoformat(),
        "to": (now + timedelta(days=1)).isoformat(),
    }
    r = await client.get(
        USAGE, params={**params, "group_by": "site", "format": "csv"}, headers=auth(token)
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["label"] for row in rows] == ["Alpha", "Bravo", "Total"]
    assert rows[0]["sessions"] == "1"
    assert float(rows[0]["occupied_h"]) == pytest.approx(2, abs=0.05)
    r = await client.get(
        USAGE, params={**params, "group_by": "day"}, headers={**auth(token), "Accept": "text/csv"}
    )
    assert r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[0].startswith("key,label,site_id,sessions,energy_kwh")


async def test_revenue_once_sessions_are_billed(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    ids = await _fleet(client, db, settings)
    s1 = await _session(
        db, ids[("CP-A", 1)], 1, JULY + timedelta(hours=10), JULY + timedelta(hours=11)
    )
    await _session(db, ids[("CP-B", 1)], 1, JULY + timedelta(hours=12), JULY + timedelta(hours=13))
    await db.execute(
        """UPDATE charging_sessions SET total_minor = 1234, currency = 'EUR', billed_at = ended_at,
                  receipt = '{}' WHERE session_id = $1""",
        s1,
    )
    token = staff_token(settings, roles=(Role.VIEWER,))
    day = {"from": "2026-07-04T22:00:00Z", "to": "2026-07-05T22:00:00Z"}
    r = await client.get(USAGE, params={**day, "group_by": "site"}, headers=auth(token))
    body = r.json()
    assert body["totals"]["revenue"] == [{"currency": "EUR", "amount_minor": 1234}]
    by_label = {i["label"]: i for i in body["items"]}
    assert by_label["Alpha"]["revenue"] == [{"currency": "EUR", "amount_minor": 1234}]
    assert by_label["Bravo"]["revenue"] == []
    r = await client.get(
        USAGE, params={**day, "group_by": "hour", "format": "csv"}, headers=auth(token)
    )
    rows = {row["key"]: row for row in csv.DictReader(io.StringIO(r.text))}
    assert rows["12"]["revenue_eur_minor"] == "1234"  # 10:00 UTC = 12:00 CEST


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-07-05T00:00:00Z", "to": "2026-07-04T00:00:00Z"}, "to"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-07-04T00:00:00Z"}, "to"),
        ({"from": "2026-07-05T00:00:00", "to": "2026-07-06T00:00:00Z"}, "from"),
        ({"group_by": "week"}, "group_by"),
    ],
)
async def test_bad_periods_are_422(
    client: AsyncTestClient[Litestar], settings: Settings, params: dict[str, str], field: str
) -> None:
    token = staff_token(settings, roles=(Role.VIEWER,))
    r = await client.get(USAGE, params=params, headers=auth(token))
    assert r.status_code == 422, r.text
    assert field in {e["field"] for e in r.json()["errors"]} or field in r.json()["detail"]


async def test_a_session_never_occupies_more_than_48_hours(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    ids = await _fleet(client, db, settings)
    now = datetime.now(UTC)
    # a StopTransaction that never came: open for five days
    await _session(db, ids[("CP-B", 1)], 1, now - timedelta(days=5), None)
    token = staff_token(settings, roles=(Role.VIEWER,))
    params = {"from": (now - timedelta(days=6)).isoformat(), "to": now.isoformat()}
    r = await client.get(USAGE, params={**params, "group_by": "day"}, headers=auth(token))
    assert r.json()["totals"]["occupied_h"] == pytest.approx(48, abs=0.01)
    assert r.json()["totals"]["sessions"] == 1
