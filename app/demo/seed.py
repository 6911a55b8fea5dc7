"""Demo data: a few hundred sites around real city centres, and a staff admin.

Idempotent (fleet import by external_id), so `make run` can seed on every start.
"""

from __future__ import annotations

import json
import math
import random
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pyotp

from app.admin.service import create_or_update_staff, otpauth_uri
from app.core.auth import Role, StaffPrincipal
from app.core.db import init_connection
from app.fleet.service import import_fleet
from app.pricing import queries as pricing_queries
from app.pricing.schemas import TariffIn
from app.pricing.service import create_tariff

# (name, country code, lat, lon, IANA zone, spread in km, number of sites)
CITIES: list[tuple[str, str, float, float, str, float, int]] = [
    ("Berlin", "DE", 52.5200, 13.4050, "Europe/Berlin", 12.0, 120),
    ("Amsterdam", "NL", 52.3676, 4.9041, "Europe/Amsterdam", 7.0, 90),
    ("Paris", "FR", 48.8566, 2.3522, "Europe/Paris", 9.0, 110),
]
STREETS = [
    "Hauptstraße",
    "Parkweg",
    "Marktplatz",
    "Bahnhofstraße",
    "Kanaalweg",
    "Rue de la Paix",
    "Avenue Victor Hugo",
    "Prinsengracht",
    "Friedrichstraße",
    "Boulevard Voltaire",
]
CONNECTOR_MIX = [
    ("TYPE2", 22.0),
    ("TYPE2", 11.0),
    ("CCS2", 50.0),
    ("CCS2", 150.0),
    ("CCS2", 300.0),
    ("CHADEMO", 50.0),
]
QUARTERS = ["Mitte", "Centrum", "Gare", "Park", "Plaza", "Hub"]
DEMO_ADMIN_EMAIL = "admin@voltway.demo"
CITY_DIGIT = {"DE": 1, "NL": 2, "FR": 3}


def demo_sites(seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    sites: list[dict[str, Any]] = []
    for city, cc, lat0, lon0, tz, spread_km, count in CITIES:
        for i in range(count):
            # Gaussian scatter around the centre, denser in the middle like real networks.
            d_km = abs(rng.gauss(0, spread_km / 2))
            bearing = rng.uniform(0, 2 * math.pi)
            lat = lat0 + (d_km / 111.32) * math.cos(bearing)
            lon = lon0 + (d_km / (111.32 * math.cos(math.radians(lat0)))) * math.sin(bearing)
            n_chargers = rng.choice([1, 1, 2, 2, 3, 4])
            chargers = []
            for c in range(n_chargers):
                kind, power = rng.choice(CONNECTOR_MIX)
                n_conn = 2 if kind == "TYPE2" else rng.choice([1, 2])
                chargers.append(
                    {
                        "charge_point_id": f"DEMO-{cc}-{i:04d}-{c + 1}",
                        "ocpp_password": f"demo-{cc.lower()}-{i:04d}-{c + 1}-secret",
                        "iccid": f"89490{CITY_DIGIT[cc]}{i:06d}{c + 1:02d}000000",
                        "connectors": [
                            {"connector_no": n + 1, "type": kind, "power_kw": power}
                            for n in range(n_conn)
                        ],
                    }
                )
            sites.append(
                {
                    "external_id": f"demo-{cc.lower()}-{i:04d}",
                    "name": f"{city} {rng.choice(QUARTERS)} {i + 1}",
                    "address": f"{rng.choice(STREETS)} {rng.randint(1, 200)}, {city}",
                    "lat": round(lat, 6),
                    "lon": round(lon, 6),
                    "timezone": tz,
                    "chargers": chargers,
                }
            )
    return sites


# Day / night / weekday-peak tariffs per country (prices excl. VAT, in its currency).
# (country, city, currency, VAT %, day, night 22–06, peak 17–20 Mon–Fri, idle per hour)
DEMO_TARIFFS: list[tuple[str, str, str, str, str, str, str, str]] = [
    ("DE", "Berlin", "EUR", "19", "0.4900", "0.3400", "0.6500", "6.00"),
    ("NL", "Amsterdam", "EUR", "21", "0.4500", "0.2900", "0.5900", "5.00"),
    ("FR", "Paris", "EUR", "20", "0.4200", "0.2700", "0.5500", "6.00"),
]
DEMO_TARIFFS_FROM = datetime(2024, 1, 1, tzinfo=UTC)
WEEKDAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"]


def demo_tariff(
    city: str, currency: str, vat: str, day: str, night: str, peak: str, idle: str
) -> TariffIn:
    """Peak first (weekday evenings), then night (wraps midnight), then the day price;
    idle time is charged per minute all day (OCPI: first match per component type)."""
    return msgspec.convert(
        {
            "name": f"{city} day/night/peak (demo)",
            "currency": currency,
            "vat_percent": vat,
            "elements": [
                {
                    "price_components": [{"type": "ENERGY", "price": peak, "step_size": 1}],
                    "restrictions": {
                        "start_time": "17:00",
                        "end_time": "20:00",
                        "day_of_week": WEEKDAYS,
                    },
                },
                {
                    "price_components": [{"type": "ENERGY", "price": night, "step_size": 1}],
                    "restrictions": {"start_time": "22:00", "end_time": "06:00"},
                },
                {
                    "price_components": [
                        {"type": "ENERGY", "price": day, "step_size": 1},
                        {"type": "PARKING_TIME", "price": idle, "step_size": 60},
                    ]
                },
            ],
        },
        TariffIn,
    )


async def seed_tariffs(conn: asyncpg.Connection, actor: StaffPrincipal) -> None:
    """One tariff per country, published once (a restart finds it by name and publishes
    no new version), assigned to that country's demo sites that have no tariff yet."""
    for cc, city, currency, vat, day, night, peak, idle in DEMO_TARIFFS:
        body = demo_tariff(city, currency, vat, day, night, peak, idle)
        tariff_id = await pricing_queries.demo_tariff_by_name(conn, name=body.name)
        if tariff_id is None:
            ref = await create_tariff(
                conn, body, actor=actor, now=datetime.now(UTC), request_id="demo-seed"
            )
            tariff_id = uuid.UUID(ref.tariff_id)
        await pricing_queries.demo_assign_missing(
            conn,
            tariff_id=tariff_id,
            external_id_prefix=f"demo-{cc.lower()}-",
            effective_from=DEMO_TARIFFS_FROM,
        )


def demo_password(charge_point_id: str) -> str:
    """The OCPP password of a demo charger (the simulator connects with it)."""
    _, cc, i, c = charge_point_id.split("-")
    return f"demo-{cc.lower()}-{i}-{c}-secret"


def demo_admin_credentials(data_dir: Path) -> dict[str, Any]:
    """Stable across runs (kept in .data/) so an authenticator app set up once keeps working."""
    creds_path = data_dir / "demo-admin.json"
    if creds_path.exists():
        creds: dict[str, Any] = json.loads(creds_path.read_text())
        return creds
    creds = {
        "email": DEMO_ADMIN_EMAIL,
        "password": secrets.token_urlsafe(12),
        "totp_secret": pyotp.random_base32(),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    creds_path.write_text(json.dumps(creds))
    creds_path.chmod(0o600)
    return creds


async def seed(database_url: str, data_dir: Path) -> dict[str, Any]:
    """Seed the fleet and the demo admin; returns the admin's credentials for printing."""
    creds = demo_admin_credentials(data_dir)
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    try:
        async with conn.transaction():
            staff_id, _, _ = await create_or_update_staff(
                conn,
                email=creds["email"],
                password=creds["password"],
                roles=[Role.ADMIN],
                totp_secret=creds["totp_secret"],
            )
            actor = StaffPrincipal(staff_id=staff_id, email=creds["email"], roles=(Role.ADMIN,))
            result = await import_fleet(conn, demo_sites(), actor=actor, request_id="demo-seed")
            await seed_tariffs(conn, actor)
    finally:
        await conn.close()
    creds["otpauth_uri"] = otpauth_uri(creds["email"], creds["totp_secret"])
    creds["created"] = result.created
    return creds
