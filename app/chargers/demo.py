"""`make run` demo: every demo charger is a simulated one connected over OCPP.

The supervisor writes the seeded demo chargers (ids, passwords, connectors, SIMs) to a
JSON file for `python -m app.sim --chargers FILE` and starts that simulator fleet once
the API answers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from app.demo.seed import demo_password


async def demo_chargers(database_url: str) -> list[dict[str, Any]]:
    """The seeded demo chargers in the simulator's file format."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT c.charge_point_id, c.iccid, array_agg(k.connector_no ORDER BY
                      k.connector_no) AS connectors, max(k.power_w) AS power_w
                 FROM chargers c JOIN connectors k USING (charger_id)
                WHERE c.charge_point_id LIKE 'DEMO-%'
                GROUP BY c.charge_point_id, c.iccid ORDER BY c.charge_point_id"""
        )
    finally:
        await conn.close()
    return [
        {
            "id": r["charge_point_id"],
            "password": demo_password(r["charge_point_id"]),
            "connectors": list(r["connectors"]),
            "iccid": r["iccid"],
            "max_power_w": float(r["power_w"]),
        }
        for r in rows
    ]


def write_demo_chargers(database_url: str, path: Path) -> int:
    """Write the demo chargers for `python -m app.sim --chargers`; returns how many."""
    chargers = asyncio.run(demo_chargers(database_url))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.encode({"chargers": chargers}))
    return len(chargers)


def simulator_command(python: str, port: int, chargers_file: Path) -> list[str]:
    """The simulator fleet: boots every demo charger, then flips a few statuses and sends
    meter values now and then, so discovery changes live."""
    return [
        python,
        "-m",
        "app.sim",
        "--url",
        f"ws://127.0.0.1:{port}/ocpp",
        "--chargers",
        str(chargers_file),
        "--mode",
        "load",
        "--rate",
        "2",
        "--status-share",
        "0.7",
        "--report-every",
        "0",
        # SMS alert demo: a car charges 100x faster than physics, MeterValues every 10 s,
        # so started → 80 % → complete show in /dev/sms within a few minutes.
        "--charge-factor",
        "100",
        "--meter-interval",
        "10",
    ]
