"""Object-level access on every driver session route (another driver's session is 404,
never 403), and the operators' list with its filters."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from app.core.auth import Role
from tests.factories import auth, staff_token
from tests.sessions.conftest import Site, charging_sim


async def test_another_drivers_session_is_404_on_every_route(world: Site) -> None:
    await world.connect(charging_sim(remote_start_plan=None))
    owner, other = await world.driver(), await world.driver()
    r = await world.start(owner)
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    await world.until(owner, sid, lambda v: v["status"] == "CHARGING")

    for method, path in (("GET", f"/v1/sessions/{sid}"), ("POST", f"/v1/sessions/{sid}/stop")):
        r = await world.http.request(method, path, headers=other["headers"])
        assert r.status_code == 404, f"{method} {path}: {r.status_code}"
        assert r.json()["code"] == "session_not_found"
        # the same answer as for a session that does not exist at all
        missing = path.replace(sid, str(uuid.uuid4()))
        r2 = await world.http.request(method, missing, headers=other["headers"])
        assert (r2.status_code, r2.json()["code"]) == (404, "session_not_found")
        r = await world.http.request(method, path)
        assert r.status_code == 401
    r = await world.http.get("/v1/sessions", headers=other["headers"])
    assert r.json()["items"] == []
    # The other driver's stop changed nothing: the owner's session still runs.
    assert (await world.session(owner, sid))["stop_requested_at"] is None
    r = await world.http.get("/v1/sessions/not-a-uuid", headers=owner["headers"])
    assert r.status_code == 404


async def test_history_is_newest_first_with_a_cursor(world: Site) -> None:
    await world.connect(charging_sim(remote_start_policy="reject"))
    driver = await world.driver()
    ids = []
    for _ in range(3):
        r = await world.start(driver)
        assert r.status_code == 201, r.text
        ids.append(r.json()["session_id"])
        await world.until(driver, ids[-1], lambda v: v["status"] == "FAILED")
    r = await world.http.get("/v1/sessions?limit=2", headers=driver["headers"])
    page = r.json()
    assert [s["session_id"] for s in page["items"]] == ids[::-1][:2]
    r = await world.http.get(
        f"/v1/sessions?limit=2&cursor={page['next_cursor']}", headers=driver["headers"]
    )
    assert [s["session_id"] for s in r.json()["items"]] == [ids[0]]
    assert r.json()["next_cursor"] is None
    r = await world.http.get("/v1/sessions?cursor=garbage", headers=driver["headers"])
    assert r.status_code == 422


async def test_operators_list_sessions_with_payment_state(world: Site) -> None:
    await world.connect(charging_sim(remote_start_plan=None))
    driver = await world.driver()
    r = await world.start(driver)
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    await world.until(driver, sid, lambda v: v["status"] == "CHARGING")
    viewer = staff_token(world.settings, roles=(Role.VIEWER,))

    async def listed(**params: str) -> list[str]:
        r = await world.http.get("/admin/v1/sessions", params=params, headers=auth(viewer))
        assert r.status_code == 200, r.text
        return [s["session_id"] for s in r.json()["items"]]

    r = await world.http.get("/admin/v1/sessions", headers=auth(viewer))
    [item] = r.json()["items"]
    assert item["session_id"] == sid
    assert item["status"] == "CHARGING"
    assert item["driver_id"] == driver["driver_id"]
    assert item["charge_point_id"] == "CP-S1"
    assert item["payment"]["status"] == "authorized"
    assert item["payment"]["preauth_minor"] == 5000
    assert await listed(status="CHARGING") == [sid]
    assert await listed(status="COMPLETED") == []
    assert await listed(site_id=world.site_id) == [sid]
    assert await listed(site_id=str(uuid.uuid4())) == []
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await listed(**{"from": hour_ago, "to": in_an_hour}) == [sid]
    assert await listed(**{"from": in_an_hour}) == []
    r = await world.http.get("/admin/v1/sessions?status=NOPE", headers=auth(viewer))
    assert r.status_code == 422
    r = await world.http.get(
        "/admin/v1/sessions?from=2026-01-01T00:00:00", headers=auth(viewer)
    )  # no offset
    assert r.status_code == 422
    pricing = staff_token(world.settings, roles=(Role.PRICING_ADMIN,))
    r = await world.http.get("/admin/v1/sessions", headers=auth(pricing))
    assert r.status_code == 403
