"""Many simulated chargers at once: specs, JSON file, ramp-up, load mode, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.sim import ConnectorSpec, SimOptions
from app.sim.fleet import Fleet, _parse_args, _run, generate_chargers, load_chargers
from tests.sim.central_system import running_central_system


def test_generated_chargers_are_deterministic() -> None:
    first, second = generate_chargers(2, connectors=3)
    assert first.charge_point_id == "SIM-000001"
    assert first.password == "simpass-00000001"
    assert first.connectors == (1, 2, 3)
    assert second.iccid == "89882300000000000002"
    assert len(second.iccid) == 20  # CiString20 in BootNotification
    assert second.imsi == "262000000000002"
    custom = generate_chargers(1, prefix="CP-", password_template="{id}-secret", first=7)
    assert (custom[0].charge_point_id, custom[0].password) == ("CP-000007", "CP-000007-secret")


@pytest.mark.parametrize("wrapped", [False, True])
def test_load_chargers_from_json(tmp_path: Path, wrapped: bool) -> None:
    entries = [
        {"id": "A", "password": "pw-a-0123456789ab", "connectors": 2, "site": "ignored"},
        {
            "id": "B",
            "password": "pw-b-0123456789ab",
            "connectors": [1, {"connector_id": 2, "max_power_w": 150000}],
            "iccid": "89882300000000000009",
            "max_power_w": 22000,
        },
        {"id": "C"},
    ]
    path = tmp_path / "chargers.json"
    path.write_text(json.dumps({"chargers": entries} if wrapped else entries))
    a, b, c = load_chargers(path)
    assert a.connectors == (1, 2)
    assert b.connectors == (1, ConnectorSpec(2, 150000))
    assert (b.iccid, b.max_power_w) == ("89882300000000000009", 22000)
    assert (c.password, c.connectors) == (None, (1,))


async def test_fleet_ramps_up_and_sends_load() -> None:
    specs = generate_chargers(20, connectors=2)
    passwords = {s.charge_point_id: s.password or "" for s in specs}
    async with running_central_system(passwords) as cs:
        fleet = Fleet(
            cs.url,
            specs,
            options=SimOptions(response_timeout_s=2, validate_messages=True),
            concurrency=5,
        )
        fleet.start()
        try:
            await fleet.wait_online(timeout_s=5)
            assert fleet.online == 20
            assert cs.refused == 0
            booted = fleet.stats.call_results
            assert booted == 20 * 4  # BootNotification + status of connectors 0, 1, 2
            await fleet.run_load(200, 0.5, status_share=0.5)
            await fleet.wait_load_answered(timeout_s=2)
        finally:
            await fleet.close()
    sent = fleet.stats.call_results - booted
    assert 60 <= sent <= 140
    assert fleet.stats.call_errors == fleet.stats.timeouts == 0
    load = [
        m
        for m in cs.received
        if m.action in ("StatusNotification", "MeterValues")
        and not (m.action == "StatusNotification" and m.payload["status"] == "Available")
    ]
    assert load  # MeterValues and Preparing flips reached the central system


async def test_cli_load_run_summary(capsys: pytest.CaptureFixture[str]) -> None:
    specs = generate_chargers(5, prefix="CLI-")
    passwords = {s.charge_point_id: s.password or "" for s in specs}
    async with running_central_system(passwords) as cs:
        args = _parse_args(
            [
                "--url",
                cs.url,
                "--count",
                "5",
                "--prefix",
                "CLI-",
                "--mode",
                "load",
                "--rate",
                "50",
                "--duration",
                "0.4",
                "--response-timeout",
                "1",
                "--report-every",
                "0",
            ]
        )
        summary = await _run(args)
    assert summary["online_after_ramp"] == 5
    assert summary["ramp_s"] is not None
    assert summary["call_results"] >= 5
    assert summary["call_errors"] == 0
    assert summary["offline_sample"] == []
    assert "online 5/5" in capsys.readouterr().out
