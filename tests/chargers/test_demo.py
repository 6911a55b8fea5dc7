"""`make run`'s demo chargers connect over OCPP with the simulator."""

from __future__ import annotations

import json
from pathlib import Path

from app.chargers.demo import demo_chargers, simulator_command
from app.demo.seed import seed
from app.sim import connect
from app.sim.fleet import load_chargers
from tests.chargers.conftest import Server, fast_sim
from tests.factories import eventually


async def test_demo_chargers_connect_and_appear_in_discovery(
    server: Server, db_url: str, tmp_path: Path
) -> None:
    await seed(db_url, tmp_path)
    chargers = await demo_chargers(db_url)
    assert len(chargers) > 10
    path = tmp_path / "demo-chargers.json"
    path.write_text(json.dumps({"chargers": chargers}))
    specs = load_chargers(path)
    assert "--chargers" in simulator_command("python", 8000, path)
    spec = specs[0]
    sim = await connect(
        server.ocpp_url,
        spec.charge_point_id,
        spec.password,
        connectors=spec.connectors,
        iccid=spec.iccid,
        options=fast_sim(),
        timeout_s=10,
    )
    try:
        site = await server.app.state.pool.fetchrow(
            """SELECT s.lat, s.lon FROM sites s JOIN chargers c USING (site_id)
               WHERE c.charge_point_id = $1""",
            spec.charge_point_id,
        )

        async def visible() -> bool:
            r = await server.http.get(
                "/v1/chargers/nearby", params={"lat": site["lat"], "lon": site["lon"]}
            )
            return any(
                c["status"] == "AVAILABLE" and c["charger_id"]
                for s in r.json()["items"]
                for c in s["connectors"]
            )

        assert await eventually(visible, within_s=2)
    finally:
        await sim.close()
