"""A session the driver starts at the charger with their app idTag is accepted only once
a hold is in place: Authorize places it while the charger waits (or finds the app's),
StartTransaction without Authorize places it too; no card, a decline or another active
session → refused, and the charger stops the transaction."""

from __future__ import annotations

from typing import Any

from tests.sessions.conftest import Site, charging_sim


async def _sessions(world: Site, driver: dict[str, Any]) -> list[dict[str, Any]]:
    r = await world.http.get("/v1/sessions", headers=driver["headers"])
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_authorize_places_the_hold_and_start_transaction_uses_it(world: Site) -> None:
    sim = await world.connect(charging_sim())
    driver = await world.driver()
    assert (await sim.authorize(driver["id_tag"]))["status"] == "Accepted"
    [starting] = await _sessions(world, driver)
    assert starting["status"] == "STARTING"
    assert starting["payment"] == {  # the hold is in place before the charger may start
        "status": "authorized",
        "preauth_minor": 5000,
        "captured_minor": 0,
        "refunded_minor": 0,
        "extra_minor": 0,
        "currency": "EUR",
    }
    tx = await sim.start_transaction(1, driver["id_tag"])
    assert tx.id_tag_status == "Accepted"
    sid = str(starting["session_id"])
    view = await world.until(driver, sid, lambda v: v["energy_kwh"] > 0.5)
    assert view["status"] == "CHARGING"
    assert view["connector_no"] == 1
    assert view["connector_id"] == world.connectors[1]
    assert len(await _sessions(world, driver)) == 1  # the same session, not a second one
    await sim.stop_transaction(1, reason="Local")
    done = await world.until(driver, sid, lambda v: v["receipt"] is not None)
    await world.run_jobs()
    paid = await world.session(driver, sid)
    assert paid["payment"]["captured_minor"] == done["receipt"]["total_minor"]


async def test_start_transaction_without_authorize_places_the_hold(world: Site) -> None:
    sim = await world.connect(charging_sim())
    driver = await world.driver()
    tx = await sim.start_transaction(2, driver["id_tag"], charge=False)
    assert tx.id_tag_status == "Accepted"
    [session] = await _sessions(world, driver)
    assert (session["status"], session["connector_no"]) == ("CHARGING", 2)
    assert session["payment"]["preauth_minor"] == 5000


async def test_without_a_card_the_charger_is_told_blocked(world: Site) -> None:
    sim = await world.connect(charging_sim())
    driver = await world.driver(card=None)
    assert (await sim.authorize(driver["id_tag"]))["status"] == "Blocked"
    tx = await sim.start_transaction(1, driver["id_tag"])
    assert tx.id_tag_status == "Blocked"
    # The charger ends what we refused (StopTransactionOnInvalidId); nothing is billed.
    await sim.wait_until(lambda: sim.transaction(1) is None, 5)
    sessions = await _sessions(world, driver)
    assert {s["status"] for s in sessions} == {"FAILED"}
    assert await world.db.fetchval("SELECT count(*) FROM session_bills") == 0


async def test_a_declined_card_is_blocked(world: Site) -> None:
    sim = await world.connect(charging_sim())
    driver = await world.driver(card="pm_card_chargeCustomerFail")
    assert (await sim.authorize(driver["id_tag"]))["status"] == "Blocked"
    [failed] = await _sessions(world, driver)
    assert (failed["status"], failed["failure_reason"]) == ("FAILED", "card_declined")


async def test_unknown_tag_is_invalid_and_a_second_session_is_concurrent(world: Site) -> None:
    sim = await world.connect(charging_sim())
    assert (await sim.authorize("NOSUCHTAG1"))["status"] == "Invalid"
    driver = await world.driver()
    r = await world.start(driver, connector_no=1)  # from the app, on connector 1
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    await world.until(driver, sid, lambda v: v["status"] == "CHARGING")
    # The same driver's tag on the other connector while charging: ConcurrentTx.
    assert (await sim.authorize(driver["id_tag"]))["status"] == "ConcurrentTx"
    tx = await sim.start_transaction(2, driver["id_tag"], charge=False)
    assert tx.id_tag_status == "ConcurrentTx"


async def test_the_chargers_authorize_of_an_app_start_needs_no_second_hold(world: Site) -> None:
    sim = await world.connect(charging_sim(remote_start_plan=None))
    sim.stop_answering("RemoteStartTransaction")  # so that the session stays STARTING
    driver = await world.driver()
    r = await world.start(driver)
    assert r.status_code == 201, r.text
    # A charger that authorises remote starts asks first: the app's hold is there.
    assert (await sim.authorize(driver["id_tag"]))["status"] == "Accepted"
    holds = await world.db.fetchval(
        "SELECT count(*) FROM payments WHERE session_id = $1::uuid", r.json()["session_id"]
    )
    assert holds == 1
