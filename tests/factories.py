"""Plain factory functions with keyword defaults (STYLE.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pyotp
from litestar.testing import AsyncTestClient

from app.admin.service import create_or_update_staff
from app.core.auth import Role, StaffPrincipal, issue_staff_token
from app.core.settings import Settings


async def make_staff(
    db: asyncpg.Connection,
    *,
    email: str = "staff@example.com",
    password: str = "correct horse battery",
    roles: tuple[Role, ...] = (Role.ADMIN,),
    totp_secret: str | None = None,
) -> dict[str, Any]:
    staff_id, secret, _ = await create_or_update_staff(
        db, email=email, password=password, roles=list(roles), totp_secret=totp_secret
    )
    return {"staff_id": staff_id, "email": email, "password": password, "totp_secret": secret}


def staff_token(settings: Settings, *, roles: tuple[Role, ...], staff_id: str = "s-1") -> str:
    principal = StaffPrincipal(staff_id=staff_id, email=f"{staff_id}@example.com", roles=roles)
    return issue_staff_token(settings, principal, datetime.now(UTC))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def totp_now(secret: str, *, at: datetime | None = None) -> str:
    return pyotp.TOTP(secret).at(at or datetime.now(UTC))


def charger(
    cpid: str,
    *,
    password: str = "charger-password-0001",
    iccid: str | None = None,
    connectors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "charge_point_id": cpid,
        "ocpp_password": password,
        "connectors": connectors
        or [
            {"connector_no": 1, "type": "CCS2", "power_kw": 150},
            {"connector_no": 2, "type": "TYPE2", "power_kw": 22},
        ],
    }
    if iccid:
        out["iccid"] = iccid
    return out


def site(
    external_id: str,
    *,
    lat: float = 52.52,
    lon: float = 13.405,
    timezone: str = "Europe/Berlin",
    name: str | None = None,
    chargers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "name": name or f"Site {external_id}",
        "address": "Somewhere 1, Berlin",
        "lat": lat,
        "lon": lon,
        "timezone": timezone,
        "chargers": chargers if chargers is not None else [charger(f"CP-{external_id}")],
    }


async def import_fleet(
    client: AsyncTestClient[Any], token: str, sites: list[dict[str, Any]], **kw: Any
) -> Any:
    r = await client.post(
        "/admin/v1/fleet/import", json={"sites": sites}, headers=auth(token), **kw
    )
    return r


async def bring_online(
    db: asyncpg.Connection,
    charge_point_ids: list[str] | None = None,
    *,
    state: str = "online",
    status: str | None = "AVAILABLE",
) -> None:
    """Mark chargers' connectivity (and optionally their connectors' status), as the OCPP
    link and the connectivity platform would."""
    where = "" if charge_point_ids is None else "WHERE c.charge_point_id = ANY($1::text[])"
    args: list[Any] = [] if charge_point_ids is None else [charge_point_ids]
    await db.execute(
        f"""UPDATE charger_connectivity h SET state = '{state}', reason = 'test',
                   last_seen_at = now()
            FROM chargers c WHERE c.charger_id = h.charger_id {"AND" + where[5:] if where else ""}""",
        *args,
    )
    if status is not None:
        await db.execute(
            f"""UPDATE connectors k SET status = '{status}' FROM chargers c
                WHERE c.charger_id = k.charger_id {"AND" + where[5:] if where else ""}""",
            *args,
        )


async def eventually(check: Any, *, within_s: float = 2.0, interval: float = 0.02) -> Any:
    """Await `check()` until it returns a truthy value or the timeout passes."""
    import asyncio
    import time

    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)


# --- drivers and SMS (identity, notifications) -------------------------------------------


def mobile_numbers(region: str, count: int, *, start: int = 0) -> list[str]:
    """`count` distinct valid mobile numbers (E.164) of `region`, from the library's
    example number with its last five digits varied."""
    import phonenumbers
    from phonenumbers import PhoneNumberFormat, PhoneNumberType

    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    assert example is not None, region
    national = str(example.national_number)
    out: list[str] = []
    i = start
    while len(out) < count and i < start + 100_000:
        number = phonenumbers.parse(f"+{example.country_code}{national[:-5]}{i:05d}", None)
        i += 1
        if phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in (
            PhoneNumberType.MOBILE,
            PhoneNumberType.FIXED_LINE_OR_MOBILE,
        ):
            out.append(phonenumbers.format_number(number, PhoneNumberFormat.E164))
    assert len(out) == count, f"only {len(out)} mobile numbers for {region}"
    return out


async def run_sms_jobs(ctx: dict[str, Any]) -> list[str]:
    """Run the `send_sms` job of every pending outbox row, as the worker would."""
    from app.notifications.tasks import send_sms

    rows = await ctx["pool"].fetch(
        """SELECT outbox_id, args FROM outbox WHERE job = 'send_sms' AND done_at IS NULL
           ORDER BY outbox_id"""
    )
    return [await send_sms(ctx, r["outbox_id"], **r["args"]) for r in rows]


async def login_driver(
    client: AsyncTestClient[Any], ctx: dict[str, Any], twilio: Any, phone: str
) -> dict[str, Any]:
    """The whole SMS-code login through the API and the send job; returns the tokens."""
    r = await client.post("/v1/auth/otp", json={"phone": phone})
    assert r.status_code == 202, r.text
    await run_sms_jobs(ctx)
    code = twilio.last_code(phone)
    r = await client.post(
        "/v1/auth/token", json={"challenge_id": r.json()["challenge_id"], "code": code}
    )
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json()
    return tokens


async def make_driver(
    db: asyncpg.Connection,
    settings: Settings,
    *,
    phone: str = "+4915199990000",
    now: datetime | None = None,
) -> dict[str, str]:
    """A driver with a live login family, straight in the database; returns ids and an
    access token issued at `now`."""
    from app.core.auth import DriverPrincipal, issue_driver_token
    from app.identity.codes import new_id_tag

    at = now or datetime.now(UTC)
    id_tag = new_id_tag()
    driver_id = await db.fetchval(
        "INSERT INTO drivers (phone, id_tag) VALUES ($1, $2) RETURNING driver_id",
        phone,
        id_tag,
    )
    family_id = await db.fetchval(
        "INSERT INTO login_families (driver_id, created_at) VALUES ($1, $2) RETURNING family_id",
        driver_id,
        at,
    )
    principal = DriverPrincipal(driver_id=str(driver_id), family_id=str(family_id))
    return {
        "driver_id": str(driver_id),
        "family_id": str(family_id),
        "id_tag": id_tag,
        "access_token": issue_driver_token(settings, principal, at),
    }


async def driver_on(
    http: Any,
    db: asyncpg.Connection,
    settings: Settings,
    *,
    phone: str,
    card: str | None = "pm_card_visa",
) -> dict[str, Any]:
    """`make_driver` plus its `headers`, with `card` (a localstripe test id) saved as the
    default card through the API of `http` (an httpx or Litestar test client) unless None;
    the saved card's answer under `card`."""
    driver: dict[str, Any] = await make_driver(db, settings, phone=phone)
    driver["headers"] = auth(driver["access_token"])
    if card is not None:
        r = await add_card(http, driver, card)
        assert r.status_code == 201, r.text
        driver["card"] = r.json()
    return driver


async def add_card(http: Any, driver: dict[str, Any], payment_method_id: str) -> Any:
    """`POST /v1/me/payment-methods` as `driver`: save (and make default) a card."""
    return await http.post(
        "/v1/me/payment-methods",
        json={"payment_method_id": payment_method_id},
        headers=auth(driver["access_token"]),
    )


async def session_view(http: Any, driver: dict[str, Any], session_id: str) -> dict[str, Any]:
    """`GET /v1/sessions/{session_id}` as `driver` (one from `driver_on`), asserted 200."""
    r = await http.get(f"/v1/sessions/{session_id}", headers=driver["headers"])
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def all_pages(
    http: Any, path: str, *, headers: dict[str, str], limit: int = 2, **params: Any
) -> list[dict[str, Any]]:
    """Every item of a keyset-paginated list, `limit` a page, in order: `path` is read
    (each page asserted 200) and its `next_cursor` followed until it is null."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {**params, "limit": limit}
    while True:
        r = await http.get(path, params=query, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        query["cursor"] = page["next_cursor"]


def energy_tariff(name: str, *, vat: str = "19", energy: str = "0.49") -> dict[str, Any]:
    """A tariff body (`POST /admin/v1/tariffs`): `energy` per kWh plus a 0.50 flat fee."""
    return {
        "name": name,
        "currency": "EUR",
        "vat_percent": vat,
        "elements": [
            {
                "price_components": [
                    {"type": "ENERGY", "price": energy, "step_size": 1},
                    {"type": "FLAT", "price": "0.50", "step_size": 1},
                ]
            }
        ],
    }


async def make_held_session(
    db: asyncpg.Connection,
    *,
    driver_id: str,
    charge_point_id: str,
    connector_no: int = 1,
    preauth_minor: int = 5000,
) -> dict[str, Any]:
    """A STARTING session of this driver on this charger whose hold is in place (what
    `POST /v1/sessions` leaves before the charger starts), straight in the database and
    without a tariff or a PaymentIntent: for OCPP tests that need a driver the charger may
    accept (a start at the charger is accepted only with a hold). Nothing is billed."""
    row = await db.fetchrow(
        """INSERT INTO charging_sessions (origin, charger_id, connector_id, connector_no,
                                          id_tag, id_tag_status, driver_id, status,
                                          meter_start_wh, started_at, preauth_minor, holds)
           SELECT 'app', c.charger_id, k.connector_id, $3, d.id_tag, 'Accepted',
                  d.driver_id, 'STARTING', 0, now(), $4, 1
             FROM chargers c
             JOIN drivers d ON d.driver_id = $1::uuid
             LEFT JOIN connectors k ON k.charger_id = c.charger_id AND k.connector_no = $3
            WHERE c.charge_point_id = $2
        RETURNING session_id, transaction_id, id_tag""",
        driver_id,
        charge_point_id,
        connector_no,
        preauth_minor,
    )
    assert row is not None, f"no charger {charge_point_id}"
    return dict(row)
