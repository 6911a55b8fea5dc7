"""A session reads the same in the driver's history as on its own page: both come from one
row shape (the `session_details` view), the driver's vehicle included."""

from __future__ import annotations

from tests.sessions.conftest import Site

# Eight times the simulator's 60 kWh car: an estimate that uses the profile differs by far
# from one inferred from energy per SoC point.
VEHICLE = {"battery_kwh": 480, "max_ac_kw": 11, "max_dc_kw": 150, "connector_types": ["CCS2"]}


async def test_the_history_estimates_from_the_drivers_vehicle_as_the_detail_does(
    world: Site,
) -> None:
    await world.connect()
    driver = await world.driver()
    r = await world.http.patch("/v1/me", json={"vehicle": VEHICLE}, headers=driver["headers"])
    assert r.status_code == 200, r.text
    r = await world.start(driver)
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    await world.until(
        driver,
        sid,
        lambda v: v["status"] == "CHARGING" and (v["soc_percent"] or 0) > 25 and v["power_kw"] > 0,
    )

    r = await world.http.get("/v1/sessions", headers=driver["headers"])
    assert r.status_code == 200, r.text
    (listed,) = r.json()["items"]
    detail = await world.session(driver, sid)
    assert listed["session_id"] == sid
    assert listed["status"] == detail["status"] == "CHARGING"
    # The car keeps charging between the two reads, so the estimates agree only closely;
    # one made without the 480 kWh battery would be about an eighth of the other.
    ahead, now = listed["estimated_minutes_remaining"], detail["estimated_minutes_remaining"]
    assert ahead is not None
    assert now is not None
    assert 0.8 * now - 2 <= ahead <= 1.25 * now + 2, (ahead, now)
    assert set(listed) == set(detail)
