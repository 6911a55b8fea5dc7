"""`make run` demo: the demo fleet's connectivity platform.

The supervisor (app/run.py) starts the Control Center stand-in (tests/standins — the same
one the tests use, INTEGRATIONS.md §2) with the demo chargers' SIMs, points
`CONTROL_CENTER_*` of the API and the worker at it, and the stand-in drops a few chargers
every minute (SIM deactivated, then activated again, each with a signed push), so the
effect shows in search. `python -m app.connectivity push` sends a hand-made signed push.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from app.core.settings import ROOT

USERNAME = "voltway-demo"
DROPOUT_EVERY_S = int(os.environ.get("DEMO_DROPOUT_EVERY_S", "60"))
DROPOUT_COUNT = 3
DROPOUT_FOR_S = 30


def platform_file(data_dir: Path) -> Path:
    return data_dir / "demo-platform.json"


def _credentials(data_dir: Path) -> dict[str, str]:
    """API key and push secret of the demo platform, kept across runs (0600)."""
    path = platform_file(data_dir)
    stored: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    creds = {
        "api_key": str(stored.get("api_key") or secrets.token_urlsafe(24)),
        "push_secret": os.environ.get("CONTROL_CENTER_PUSH_SECRET")
        or str(stored.get("push_secret") or secrets.token_urlsafe(32)),
    }
    return creds


def start_platform(
    database_url: str, data_dir: Path, api_port: int, child_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start the stand-in for the demo SIMs; sets CONTROL_CENTER_* in `child_env`."""
    from app.chargers.demo import demo_chargers
    from app.core.embedded import free_port

    chargers = asyncio.run(demo_chargers(database_url))
    sims = [{"iccid": c["iccid"], "charge_point_id": c["id"]} for c in chargers if c.get("iccid")]
    data_dir.mkdir(parents=True, exist_ok=True)
    sims_path = data_dir / "demo-sims.json"
    sims_path.write_text(json.dumps(sims))
    creds = _credentials(data_dir)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path = platform_file(data_dir)
    path.write_text(json.dumps({**creds, "base": base, "api_port": api_port, "sims": len(sims)}))
    path.chmod(0o600)
    child_env.update(
        {
            "CONTROL_CENTER_API_BASE": base,
            "CONTROL_CENTER_USERNAME": USERNAME,
            "CONTROL_CENTER_API_KEY": creds["api_key"],
            "CONTROL_CENTER_PUSH_SECRET": creds["push_secret"],
        }
    )
    proc = subprocess.Popen(  # noqa: S603 - our own entry point
        [
            sys.executable,
            "-m",
            "tests.standins.control_center",
            "--port",
            str(port),
            "--username",
            USERNAME,
            "--sims",
            str(sims_path),
            "--push-url",
            f"http://127.0.0.1:{api_port}/webhooks/control-center",
            "--dropout-every",
            str(DROPOUT_EVERY_S),
            "--dropout-count",
            str(DROPOUT_COUNT),
            "--dropout-for",
            str(DROPOUT_FOR_S),
        ],
        env=child_env,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/_standin/stats", timeout=1) as r:  # noqa: S310
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    print(
        f"demo: connectivity platform stand-in on {base} ({len(sims)} SIMs; "
        f"{DROPOUT_COUNT} chargers drop off every {DROPOUT_EVERY_S} s for {DROPOUT_FOR_S} s)",
        flush=True,
    )
    return proc


def tour_lines(base: str, data_dir: Path) -> list[str]:
    """Lines for the printed tour: a signed push by hand, the alerts, a release."""
    sims_path = data_dir / "demo-sims.json"
    sims = json.loads(sims_path.read_text()) if sims_path.exists() else []
    cpid = sims[0]["charge_point_id"] if sims else "DEMO-DE-0000-1"
    return [
        "",
        "Connectivity (stand-in platform; a few demo chargers drop off every minute):",
        f"  .venv/bin/python -m app.connectivity push --charger {cpid} --event IMEI_CHANGE",
        f"  curl -s '{base}/admin/v1/fleet/chargers?connectivity=quarantined' "
        '-H "authorization: Bearer $TOKEN"',
        f"  curl -s '{base}/admin/v1/alerts?limit=5' -H \"authorization: Bearer $TOKEN\"",
        f"  curl -s -X POST '{base}/admin/v1/fleet/chargers/<charger_id>/release' "
        '-H "authorization: Bearer $TOKEN"',
    ]
