"""`GET /v1/me/notifications`: the driver's own alerts, newest first, paged by cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.settings import Settings
from tests.factories import all_pages, make_driver
from tests.notifications.helpers import driver_with_session, queue_session_alert

KINDS = ["session_started", "soc_80", "ten_minutes_left", "session_complete", "idle_fee_warning"]


async def test_newest_first_paged_and_only_the_drivers_own(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    mine = await driver_with_session(db, settings, "+447700900123")
    theirs = await driver_with_session(db, settings, "+447700900456")
    t0 = datetime.now(UTC) - timedelta(hours=1)
    for i, kind in enumerate(KINDS):
        await queue_session_alert(db, mine, kind, now=t0 + timedelta(minutes=i))
    await queue_session_alert(db, theirs, "soc_80", now=t0)
    headers = {"Authorization": f"Bearer {mine['driver']['access_token']}"}
    items = await all_pages(client, "/v1/me/notifications", headers=headers)
    assert [i["kind"] for i in items] == list(reversed(KINDS))
    item = items[-1]
    assert set(item) == {
        "notification_id",
        "kind",
        "session_id",
        "reservation_id",
        "body",
        "status",
        "created_at",
        "sent_at",
    }
    assert item["session_id"] == str(mine["session_id"])
    assert item["status"] == "queued"
    assert item["sent_at"] is None


async def test_needs_a_driver_token_and_a_valid_cursor(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    assert (await client.get("/v1/me/notifications")).status_code == 401
    me = await make_driver(db, settings, phone="+447700900123")
    r = await client.get(
        "/v1/me/notifications?cursor=not-a-cursor",
        headers={"Authorization": f"Bearer {me['access_token']}"},
    )
    assert r.status_code == 422
    assert r.json()["code"] == "validation_failed"
