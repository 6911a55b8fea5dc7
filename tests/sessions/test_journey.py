"""The driver's journey over real HTTP, a simulated charger over OCPP and localstripe:
start (hold, RemoteStart), progress, stop, bill, receipt, capture — and the ways a start
fails (declined, no card, charger rejects or does not answer)."""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo

from app.payments.stripe_client import Gateway
from app.pricing import engine
from app.pricing import service as pricing
from app.sessions import billing
from app.sessions.billing import Reading
from app.sessions.tasks import sweep_starting
from tests.sessions.conftest import Site, charging_sim

LIVE = ("CHARGING", "SUSPENDED", "FINISHING")


async def _remote_starts(sim: Any) -> list[dict[str, Any]]:
    return [p for action, p in sim.calls_received if action == "RemoteStartTransaction"]


async def _independent_bill(world: Site, session_id: str) -> engine.Bill:
    """The bill recomputed from what the database holds, with the engine directly."""
    row = await world.db.fetchrow(
        "SELECT * FROM charging_sessions WHERE session_id = $1::uuid", session_id
    )
    assert row is not None
    readings = await world.db.fetch(
        "SELECT at, value FROM meter_samples WHERE transaction_id = $1 "
        "AND measurand = 'Energy.Active.Import.Register' AND phase IS NULL",
        row["transaction_id"],
    )
    tariff = await pricing.tariff_version(world.db, str(row["tariff_id"]), row["tariff_version"])
    return billing.bill_session(
        tariff,
        ZoneInfo("Europe/Berlin"),
        start_at=row["started_at"],
        meter_start_wh=row["meter_start_wh"],
        readings=[Reading(r["at"], r["value"]) for r in readings],
        end_at=row["ended_at"],
        meter_stop_wh=row["meter_stop_wh"],
        charging_end=row["charging_ended_at"] or row["ended_at"],
    )


async def test_the_whole_journey(world: Site, gateway: Gateway) -> None:
    sim = await world.connect()
    driver = await world.driver()
    r = await world.start(driver)
    assert r.status_code == 201, r.text
    started = r.json()
    assert started["status"] == "STARTING"
    assert "hold;dur=" in r.headers["server-timing"]
    assert (started["preauth_minor"], started["currency"]) == (5000, "EUR")
    assert started["tariff_id"] == world.tariff_id
    sid = started["session_id"]

    # The charger was asked (with the driver's idTag) and starts charging.
    view = await world.until(
        driver, sid, lambda v: v["status"] == "CHARGING" and v["energy_kwh"] > 4
    )
    assert await _remote_starts(sim) == [{"id_tag": driver["id_tag"], "connector_id": 1}]
    assert view["power_kw"] > 0
    assert view["soc_percent"] > 25
    assert view["cost_so_far_minor"] > 0
    # No vehicle on the profile: the battery is inferred from energy per SoC point, and
    # the estimate follows the car's own curve (the simulator's 60 kWh car).
    car = sim.transaction(1)
    assert car is not None
    assert car.vehicle is not None
    to_full = car.vehicle.seconds_to(100) / 60
    assert view["estimated_minutes_remaining"] is not None
    assert abs(view["estimated_minutes_remaining"] - to_full) < 0.1 * to_full + 3
    assert view["estimated_minutes_to_80"] <= view["estimated_minutes_remaining"]
    assert view["payment"]["status"] == "authorized"
    assert view["payment"]["preauth_minor"] == 5000
    assert view["receipt"] is None

    r = await world.http.post(f"/v1/sessions/{sid}/stop", headers=driver["headers"])
    assert r.status_code == 202, r.text
    done = await world.until(driver, sid, lambda v: v["receipt"] is not None)
    assert done["status"] == "COMPLETED"
    receipt = done["receipt"]
    assert receipt["currency"] == "EUR"
    assert receipt["subtotal_minor"] == sum(line["amount_minor"] for line in receipt["lines"])
    assert receipt["total_minor"] == receipt["subtotal_minor"] + receipt["vat_minor"]
    assert {line["component"] for line in receipt["lines"]} >= {"ENERGY", "FLAT"}
    assert done["cost_so_far_minor"] == receipt["total_minor"]
    expected = await _independent_bill(world, sid)
    assert receipt["total_minor"] == expected.total_minor
    assert [line["amount_minor"] for line in receipt["lines"]] == [
        line.amount_minor for line in expected.lines
    ]
    assert done["payment"]["status"] == "capture_pending"

    # The worker captures exactly the total; localstripe agrees to the cent.
    await world.run_jobs()
    paid = await world.session(driver, sid)
    assert paid["payment"]["status"] == "captured"
    assert paid["payment"]["captured_minor"] == receipt["total_minor"] <= 5000
    pi_id = receipt["payments"][0]["payment_intent_id"]
    intent = await gateway.v1.payment_intents.retrieve_async(pi_id)
    assert intent.status == "succeeded"
    assert intent.amount == 5000
    captured = intent.amount - sum(c.amount_refunded for c in _charges(intent))
    assert captured == receipt["total_minor"]

    # History, newest first.
    r = await world.http.get("/v1/sessions", headers=driver["headers"])
    assert [s["session_id"] for s in r.json()["items"]] == [sid]


def _charges(intent: Any) -> list[Any]:
    charges = getattr(intent, "charges", None)
    return list(charges.data) if charges is not None else []


async def test_a_declined_card_is_402_and_nothing_reaches_the_charger(world: Site) -> None:
    sim = await world.connect()
    driver = await world.driver(card="pm_card_chargeCustomerFail")
    r = await world.start(driver)
    assert r.status_code == 402, r.text
    assert r.json()["code"] == "card_declined"
    assert await _remote_starts(sim) == []
    r = await world.http.get("/v1/sessions", headers=driver["headers"])
    [failed] = r.json()["items"]
    assert (failed["status"], failed["failure_reason"]) == ("FAILED", "card_declined")
    # The driver may try again (another card) at once: the failed one is not active.
    r = await world.start(driver)
    assert r.status_code == 402


async def test_no_card_on_file_is_402(world: Site) -> None:
    sim = await world.connect()
    driver = await world.driver(card=None)
    r = await world.start(driver)
    assert r.status_code == 402, r.text
    assert r.json()["code"] == "payment_method_required"
    assert await _remote_starts(sim) == []


async def test_charger_rejects_the_start_the_session_fails_and_the_hold_is_released(
    world: Site, gateway: Gateway
) -> None:
    await world.connect(charging_sim(remote_start_policy="reject"))
    driver = await world.driver()
    r = await world.start(driver)
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    failed = await world.until(driver, sid, lambda v: v["status"] == "FAILED")
    assert failed["failure_reason"] == "charger_rejected"
    await world.run_jobs()
    view = await world.session(driver, sid)
    assert view["payment"]["status"] == "canceled"
    assert view["payment"]["captured_minor"] == 0
    pi = await world.db.fetchval(
        "SELECT payment_intent_id FROM payments WHERE session_id = $1::uuid", sid
    )
    assert (await gateway.v1.payment_intents.retrieve_async(pi)).status == "canceled"
    # The driver can start again right away.
    r = await world.start(driver, connector_no=2)
    assert r.status_code == 201, r.text


async def test_charger_does_not_answer_the_session_fails(world: Site) -> None:
    sim = await world.connect()
    sim.stop_answering("RemoteStartTransaction")
    driver = await world.driver()
    r = await world.start(driver)
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    failed = await world.until(driver, sid, lambda v: v["status"] == "FAILED", within_s=6)
    assert failed["failure_reason"] == "charger_no_answer"


async def test_one_active_session_per_driver(world: Site) -> None:
    await world.connect()
    driver = await world.driver()
    first = await world.start(driver, connector_no=1)
    assert first.status_code == 201, first.text
    second = await world.start(driver, connector_no=2)
    assert second.status_code == 409
    assert second.json()["code"] == "session_active"


async def test_an_occupied_connector_is_409(world: Site) -> None:
    await world.connect()
    a, b = await world.driver(), await world.driver()
    r = await world.start(a)
    assert r.status_code == 201
    await world.until(a, r.json()["session_id"], lambda v: v["status"] in LIVE)
    r = await world.start(b)
    assert r.status_code == 409
    assert r.json()["code"] == "connector_unavailable"


async def test_an_offline_charger_is_409(world: Site) -> None:
    driver = await world.driver()  # the charger never connected
    r = await world.start(driver)
    assert r.status_code == 409
    assert r.json()["code"] == "connector_unavailable"


async def test_unknown_connector_is_404(world: Site) -> None:
    driver = await world.driver()
    r = await world.http.post(
        "/v1/sessions", json={"connector_id": str(uuid.uuid4())}, headers=driver["headers"]
    )
    assert r.status_code == 404
    r = await world.http.post(
        "/v1/sessions", json={"connector_id": "x", "extra": 1}, headers=driver["headers"]
    )
    assert r.status_code == 422


async def test_a_start_the_charger_never_began_is_failed_by_the_sweep(world: Site) -> None:
    sim = await world.connect(charging_sim(remote_start_plan=None))
    driver = await world.driver()
    # The charger accepts RemoteStart but the car never comes: no StartTransaction.
    sim.stop_answering("RemoteStartTransaction")
    r = await world.start(driver)
    sid = r.json()["session_id"]
    await world.db.execute(  # a start from before the timeout, still STARTING
        "UPDATE charging_sessions SET created_at = now() - interval '1 hour', "
        "status = 'STARTING', failure_reason = NULL, ended_at = NULL WHERE session_id = $1::uuid",
        sid,
    )
    ctx = {"pool": world.srv.app.state.pool, "settings": world.settings}
    assert await sweep_starting(ctx) == 1
    assert await sweep_starting(ctx) == 0
    await world.run_jobs()
    view = await world.session(driver, sid)
    assert (view["status"], view["failure_reason"]) == ("FAILED", "not_started")
    assert view["payment"]["status"] == "canceled"


async def test_a_start_called_off_before_the_charger_began_stays_off(world: Site) -> None:
    sim = await world.connect(charging_sim(remote_start_plan=None))
    sim.stop_answering("RemoteStartTransaction")
    driver = await world.driver()
    r = await world.start(driver)
    sid = r.json()["session_id"]
    r = await world.http.post(f"/v1/sessions/{sid}/stop", headers=driver["headers"])
    assert r.status_code == 202, r.text
    assert (r.json()["status"], r.json()["failure_reason"]) == ("FAILED", "cancelled")
    await world.run_jobs()
    assert (await world.session(driver, sid))["payment"]["status"] == "canceled"
    # The charger acts on the RemoteStart it had accepted after all: refused, no new hold.
    sim.resume_answering()
    tx = await sim.start_transaction(1, driver["id_tag"], charge=False)
    assert tx.id_tag_status == "Blocked"
    holds = await world.db.fetchval(
        "SELECT count(*) FROM payments WHERE driver_id = $1::uuid", driver["driver_id"]
    )
    assert holds == 1
    r = await world.http.post(f"/v1/sessions/{sid}/stop", headers=driver["headers"])
    assert (r.status_code, r.json()["code"]) == (409, "session_not_active")
