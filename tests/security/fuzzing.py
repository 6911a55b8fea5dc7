"""schemathesis over the committed OpenAPI document against the real app in a real server.

Shared by the bounded run in `make test` (tests/security/test_fuzz.py) and `make fuzz`
(bench/fuzz.py): `seed_service` gives the service something to find (a staff admin logged
in with password + TOTP, two drivers, two online sites, a tariff assigned to one), and
`run_schemathesis` runs the schemathesis CLI (`st run`: examples, coverage, fuzzing and
stateful phases, every check) with the staff and driver tokens bound to the document's
`staffBearer` / `driverBearer` schemes, and reads its JSON report.

Checks, all on: no 5xx; every status code, content type, header and body as documented;
a request the document calls invalid is refused; auth is not ignored; unsupported methods
get 405. `positive_data_acceptance` (a schema-valid request must be accepted) also accepts
401/402/404/409/422/429: JSON Schema cannot say that a cursor must be one we issued, a phone
number must be plausible, an id must exist, a code must be right or a card be on file, so such requests are
refused with the documented problem instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.core.auth import Role
from app.core.db import init_connection
from app.core.settings import ROOT, Settings
from tests.conftest import TEST_JWT_SECRET
from tests.factories import bring_online, charger, make_driver, make_staff, site, totp_now
from tests.standins.nominatim import nominatim

SPEC = ROOT / "openapi" / "openapi.json"
ST = Path(sys.executable).parent / "st"
STAFF_EMAIL = "fuzz-admin@example.com"
STAFF_PASSWORD = "fuzz admin password 1"
# A schema-valid request may still be refused for what JSON Schema cannot say (see above).
POSITIVE_OK: list[int | str] = ["2XX", 401, 402, 404, 409, 422, 429]


@dataclass(frozen=True)
class Credentials:
    staff_token: str
    driver_token: str
    logout_token: str  # a second driver for POST /v1/auth/logout, which ends its login


@dataclass
class FuzzRun:
    exit_code: int
    requests: int
    seconds: float
    failures: list[dict[str, Any]]
    output: str
    report: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"exit {self.exit_code}, {self.requests} requests in {self.seconds:.0f} s"]
        for f in self.failures:
            lines.append(f"  {f.get('code')} {f.get('title')}: {f.get('operations')}")
        return "\n".join(lines)


async def seed_service(db_url: str, base_url: str) -> Credentials:
    """Staff admin (logged in through the API), two drivers, data for the lists."""
    conn = await asyncpg.connect(db_url)
    await init_connection(conn)
    try:
        staff = await make_staff(
            conn, email=STAFF_EMAIL, password=STAFF_PASSWORD, roles=(Role.ADMIN,)
        )
        settings = Settings(
            database_url=db_url,
            redis_url="redis://unused",
            jwt_secret=TEST_JWT_SECRET,
            driver_access_ttl_s=6 * 3600,
        )
        now = datetime.now(UTC)
        suffix = uuid.uuid4().int % 10_000
        driver = await make_driver(conn, settings, phone=f"+491519999{suffix:04d}", now=now)
        leaver = await make_driver(conn, settings, phone=f"+491519998{suffix:04d}", now=now)
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            r = await http.post(
                "/admin/v1/auth/login",
                json={
                    "email": STAFF_EMAIL,
                    "password": STAFF_PASSWORD,
                    "totp_code": totp_now(staff["totp_secret"]),
                },
            )
            r.raise_for_status()
            staff_token: str = r.json()["access_token"]
            headers = {"Authorization": f"Bearer {staff_token}"}
            sites = [
                site("FUZZ-1", chargers=[charger("FUZZ-CP-1", iccid="8949000000000000011")]),
                site("FUZZ-2", lat=48.137, lon=11.575, chargers=[charger("FUZZ-CP-2")]),
            ]
            r = await http.post("/admin/v1/fleet/import", json={"sites": sites}, headers=headers)
            r.raise_for_status()
            r = await http.post(
                "/admin/v1/tariffs",
                headers=headers,
                json={
                    "name": "Fuzz",
                    "currency": "EUR",
                    "vat_percent": "19",
                    "elements": [
                        {"price_components": [{"type": "ENERGY", "price": "0.39", "step_size": 1}]}
                    ],
                },
            )
            r.raise_for_status()
            tariff_id = r.json()["tariff_id"]
            r = await http.get("/admin/v1/fleet/sites", headers=headers)
            r.raise_for_status()
            site_id = r.json()["items"][0]["site_id"]
            r = await http.post(
                "/admin/v1/tariff-assignments",
                headers=headers,
                json={
                    "tariff_id": tariff_id,
                    "site_id": site_id,
                    "effective_from": "2026-01-01T00:00:00Z",
                },
            )
            r.raise_for_status()
        await bring_online(conn)
    finally:
        await conn.close()
    return Credentials(
        staff_token=staff_token,
        driver_token=driver["access_token"],
        logout_token=leaver["access_token"],
    )


@contextmanager
def service_peers(work_dir: Path) -> Iterator[dict[str, str]]:
    """The outside systems the service talks to, played locally: a geocoder stand-in and
    a localstripe server. Yields the environment that points the service at them."""
    from app.payments.localstripe import LocalStripe

    stripe = LocalStripe(work_dir / "localstripe.log")
    env = stripe.start()
    try:
        with nominatim({"berlin": ("52.52", "13.405")}) as geocoder:
            yield {
                **env,
                "STRIPE_WEBHOOK_SECRET": "whsec_fuzz_0123456789abcdef",
                "GEOCODER_URL": geocoder,
            }
    finally:
        stripe.stop()


def _toml(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers and arrays are valid TOML values


def write_config(path: Path, creds: Credentials) -> None:
    lines = [
        "[generation]",
        'database = "none"',
        "[checks.positive_data_acceptance]",
        f"expected-statuses = {_toml(POSITIVE_OK)}",
        "[auth.openapi.driverBearer]",
        f"bearer = {_toml(creds.driver_token)}",
        "[auth.openapi.staffBearer]",
        f"bearer = {_toml(creds.staff_token)}",
        # API.md: a bad site is reported by index in a 200 and the good ones apply, so an
        # import with an invalid site is accepted on purpose.
        "[[operations]]",
        'include-path = "/admin/v1/fleet/import"',
        "[operations.checks.negative_data_rejection]",
        "enabled = false",
        # Nothing the generator sends carries a valid signature: refused (documented) is right.
        "[[operations]]",
        'include-path-regex = "^/webhooks/"',
        "[operations.checks.positive_data_acceptance]",
        f"expected-statuses = {_toml([*POSITIVE_OK, 400, 403])}",
        "[[operations]]",
        'include-path = "/v1/auth/logout"',
        "[operations.headers]",
        f"Authorization = {_toml('Bearer ' + creds.logout_token)}",
    ]
    path.write_text("\n".join(lines) + "\n")


def run_schemathesis(
    base_url: str,
    creds: Credentials,
    work_dir: Path,
    *,
    max_examples: int,
    seed: int,
    workers: int = 1,  # 2 threads race in CPython 3.11 ast.parse inside hypothesis (a tool error)
    max_time_s: float | None = None,
    timeout_s: float = 1800,
    spec: Path = SPEC,
    extra_args: tuple[str, ...] = (),
) -> FuzzRun:
    """`st run` over `spec` against `base_url`; the JSON report is read back."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "schemathesis.toml"
    write_config(config, creds)
    report_path = work_dir / "report.json"
    cmd = [
        *(str(ST), "--no-color", "--config-file", str(config), "run", str(spec)),
        *("--url", base_url, "--max-examples", str(max_examples)),
        *("--seed", str(seed), "--workers", str(workers)),
        *("--report", "json", "--report-json-path", str(report_path)),
        *(("--max-time", str(int(max_time_s))) if max_time_s else ()),
        *extra_args,
    ]
    proc = subprocess.run(
        cmd,
        cwd=work_dir,  # schemathesis' own cache and artefacts stay out of the tree
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"},
        check=False,
    )
    (work_dir / "output.txt").write_text(proc.stdout + proc.stderr)
    report: dict[str, Any] = {}
    if report_path.exists():
        report = json.loads(report_path.read_text())
    return FuzzRun(
        exit_code=proc.returncode,
        requests=int(report.get("test_cases", {}).get("generated", 0)),
        seconds=float(report.get("running_time", 0.0)),
        failures=list(report.get("failures", [])),
        output=proc.stdout + proc.stderr,
        report=report,
    )
