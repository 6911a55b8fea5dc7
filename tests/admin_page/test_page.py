"""The pricing page in a real browser: sign-in with TOTP, the price chart and its bands
(DST days included), edit → validation → preview → publish, read-only roles, analytics,
fleet health, no console errors. Screenshots go to .data/artifacts/admin_page/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from app.demo.seed import demo_tariff
from tests.admin_page.conftest import TABLET, Console, shot
from tests.factories import auth, charger, import_fleet, make_staff, site, staff_token, totp_now

MONDAY = "2026-03-30"  # Europe/Berlin, the day after the spring DST change
DST_SUNDAY = "2026-03-29"  # 23 hours long in Berlin
PEAK_PRICE = "ed-elements-0-price_components-0-price"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def data(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings, live: str
) -> dict[str, Any]:
    """Two Berlin sites on the demo's Berlin day/night/peak tariff, and staff of each role,
    arranged once the app (`live`) is up."""
    token = staff_token(settings, roles=(Role.ADMIN,))
    r = await import_fleet(
        client,
        token,
        [
            site(
                "berlin-mitte",
                name="Berlin Mitte",
                chargers=[charger("CP-MITTE-1", iccid="8949000000000000011")],
            ),
            site("berlin-park", name="Berlin Park", chargers=[charger("CP-PARK-1")]),
        ],
    )
    assert r.status_code == 200, r.text
    body = msgspec.to_builtins(
        demo_tariff("Berlin", "EUR", "19", "0.4900", "0.3400", "0.6500", "6.00")
    )
    r = await client.post("/admin/v1/tariffs", json=body, headers=auth(token))
    assert r.status_code == 201, r.text
    tariff_id = r.json()["tariff_id"]
    for site_id in await db.fetch("SELECT site_id FROM sites"):
        r = await client.post(
            "/admin/v1/tariff-assignments",
            json={
                "tariff_id": tariff_id,
                "site_id": str(site_id[0]),
                "effective_from": "2024-01-01T00:00:00Z",
            },
            headers=auth(token),
        )
        assert r.status_code == 201, r.text
    staff = {}
    for role in Role:
        staff[role] = await make_staff(db, email=f"{role.value}@voltway.test", roles=(role,))
    return {"tariff_id": tariff_id, "staff": staff, "token": token}


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
async def page(browser: Any, console: Console) -> Any:
    """A new tab, watched by `console` from the start."""
    tab = await browser.new_page()
    console.watch(tab)
    return tab


def assert_quiet(console: Console, *http: tuple[int, str]) -> None:
    """No console errors or uncaught exceptions, and no answers of 400 and more but `http`."""
    assert console.errors == []
    assert console.http == list(http)


async def api(base: str, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
    """A call to the admin API of the app at `base`, as staff with `token`."""
    async with httpx.AsyncClient(base_url=base) as c:
        return await c.request(method, path, headers=auth(token), **kwargs)


async def open_sign_in(page: Any, base: str) -> None:
    await page.goto(f"{base}/admin/")
    await page.wait_for_selector("#login-view:not([hidden])")


async def fill_sign_in(page: Any, who: dict[str, Any]) -> None:
    await page.get_by_label("Email").fill(who["email"])
    await page.get_by_label("Password").fill(who["password"])
    await page.get_by_label("Authenticator code").fill(totp_now(who["totp_secret"]))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_selector("#nav:not([hidden])")


async def sign_in(page: Any, base: str, who: dict[str, Any]) -> None:
    await open_sign_in(page, base)
    await fill_sign_in(page, who)


async def expected_bands(base: str, token: str, tariff_id: str, day: str, days: int = 1) -> int:
    tz = ZoneInfo("Europe/Berlin")
    start = datetime.fromisoformat(day).replace(tzinfo=tz)
    end = (start.replace(tzinfo=None) + timedelta(days=days)).replace(tzinfo=tz)
    params = {"from": start.isoformat(), "to": end.isoformat(), "timezone": "Europe/Berlin"}
    r = await api(base, "GET", f"/admin/v1/tariffs/{tariff_id}/timeline", token, params=params)
    assert r.status_code == 200, r.text
    return len(r.json()["bands"])


UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => el.type !== 'hidden' && !el.closest('[hidden]'))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
  .map((el) => el.id || el.outerHTML.slice(0, 80))"""


async def show_day(page: Any, day: str, count: int) -> None:
    await page.fill("#chart-date", day)
    await page.dispatch_event("#chart-date", "change")
    await page.wait_for_function(
        "n => document.querySelector('#price-chart').dataset.bandCount === String(n)"
        " && document.querySelectorAll('#band-table tbody tr').length === n",
        arg=count,
    )


async def test_sign_in_chart_edit_preview_publish(
    data: dict[str, Any], live: str, page: Any, console: Console
) -> None:
    await open_sign_in(page, live)
    await shot(page, "01-sign-in", full_page=False)
    await fill_sign_in(page, data["staff"][Role.PRICING_ADMIN])

    # The chart: as many bands as the API's timeline, on a normal and on a DST day.
    monday = await expected_bands(live, data["token"], data["tariff_id"], MONDAY)
    assert monday == 5  # night, day, peak 17–20, day, night 22–
    await show_day(page, MONDAY, monday)
    assert await page.locator("#price-chart canvas").count() == 1
    assert await page.evaluate(UNLABELLED) == []  # every control has an accessible name
    await shot(page, "02-pricing-day")
    sunday = await expected_bands(live, data["token"], data["tariff_id"], DST_SUNDAY)
    await show_day(page, DST_SUNDAY, sunday)
    assert "23 h" in await page.inner_text("#chart-caption")
    await page.check("input[name=span][value=week]")
    week = await expected_bands(live, data["token"], data["tariff_id"], DST_SUNDAY, days=7)
    await page.wait_for_function(
        "n => document.querySelector('#price-chart').dataset.bandCount === String(n)", arg=week
    )
    await shot(page, "03-pricing-week-dst")
    await page.check("input[name=span][value=day]")
    await show_day(page, MONDAY, monday)

    # Publishing waits for a preview of exactly this draft.
    assert await page.is_disabled("#publish-btn")
    # A bad price: the API's 422 lands next to the input and in the summary.
    await page.fill(f"#{PEAK_PRICE}", "0,70")
    await page.click("#preview-btn")
    await page.wait_for_selector(f"#{PEAK_PRICE}[aria-invalid=true]")
    assert "decimal" in await page.inner_text(f"#{PEAK_PRICE}-error")
    assert "1 problem" in await page.inner_text("#editor-errors")
    await shot(page, "04-validation")
    assert await page.is_disabled("#publish-btn")

    # A good one: the preview compares old and new for a sample session in the peak.
    await page.fill(f"#{PEAK_PRICE}", "0.7500")
    await page.fill("#sample-start", f"{MONDAY}T18:00")
    await page.click("#preview-btn")
    await page.wait_for_selector("#quote-compare")
    old_total = await page.inner_text("#quote-old-total")
    new_total = await page.inner_text("#quote-new-total")
    assert old_total != new_total
    assert "more" in await page.inner_text("#quote-delta")
    assert await page.locator("#preview-chart canvas").count() == 1
    await shot(page, "05-preview")
    assert await page.is_enabled("#publish-btn")
    await page.click("#publish-btn")
    await page.wait_for_function(
        "() => document.querySelector('#publish-status').textContent.includes('Published version 2')"
    )
    await shot(page, "06-published")

    r = await api(live, "GET", f"/admin/v1/tariffs/{data['tariff_id']}", data["token"])
    stored = r.json()
    assert stored["version"] == 2
    assert stored["elements"][0]["price_components"][0]["price"] == "0.7500"
    # The audit trail on the page names who changed what.
    await page.wait_for_function(
        "() => document.querySelector('#tariff-audit-table')?.textContent.includes('0.6500 → 0.7500')"
    )
    assert "pricing_admin@voltway.test" in await page.inner_text("#tariff-audit-table")
    assert_quiet(console, (422, f"{live}/admin/v1/tariff-previews"))


async def test_viewer_sees_everything_read_only(
    settings: Settings, data: dict[str, Any], live: str, page: Any, console: Console
) -> None:
    await sign_in(page, live, data["staff"][Role.VIEWER])
    await page.wait_for_selector("#price-chart canvas")
    readonly = await page.inner_text("#pricing-readonly")
    assert "viewer" in readonly
    assert "pricing_admin" in readonly
    assert await page.locator("#publish-btn").count() == 0
    assert await page.locator("#schedule-btn").count() == 0
    assert await page.locator("#assign-form").count() == 0
    assert await page.locator("#new-tariff").count() == 0
    assert await page.is_disabled(f"#{PEAK_PRICE}")
    # Reading is allowed: a preview of the (unchanged) prices still works.
    await page.click("#preview-btn")
    await page.wait_for_selector("#quote-compare")
    await shot(page, "07-viewer-read-only")
    # The page's local days, in this browser's own time-zone data: 23 h, 25 h, 24.5 h, and
    # a day whose midnight does not exist (Chile moves 00:00 to 01:00).
    hours = await page.evaluate(
        """async () => {
          const T = await import('/admin/static/js/time.js');
          const len = (d, tz) => { const [a, b] = T.dayRange(d, 1, tz); return (b - a) / 36e5; };
          const [s] = T.dayRange('2026-09-06', 1, 'America/Santiago');
          return [len('2026-03-29', 'Europe/Berlin'), len('2026-10-25', 'Europe/Berlin'),
                  len('2026-04-05', 'Australia/Lord_Howe'), len('2026-09-06', 'America/Santiago'),
                  new Date(s).toISOString(), T.toLocalInput(s, 'America/Santiago')];
        }"""
    )
    assert hours == [23, 25, 24.5, 23, "2026-09-06T04:00:00.000Z", "2026-09-06T01:00"]
    # Fleet health: no release for a viewer, and it says why.
    await page.click("#nav a[data-view=fleet]")
    await page.wait_for_selector("#fleet-readonly")
    assert await page.locator("button", has_text="Release").count() == 0
    # Even a forged call is refused by the API (the page never offers it).
    r = await api(
        live,
        "PUT",
        f"/admin/v1/tariffs/{data['tariff_id']}",
        staff_token(settings, roles=(Role.VIEWER,)),
        json=msgspec.to_builtins(demo_tariff("Berlin", "EUR", "19", "1", "1", "1", "1")),
    )
    assert r.status_code == 403
    assert_quiet(console)


async def test_analytics_fleet_and_tablet_width(
    db: asyncpg.Connection, data: dict[str, Any], live: str, page: Any, console: Console
) -> None:
    await db.execute("UPDATE connectors SET created_at = now() - interval '30 days'")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = await db.fetch(
        "SELECT c.charger_id, k.connector_id, k.connector_no FROM chargers c JOIN connectors k USING (charger_id) ORDER BY c.charge_point_id, k.connector_no"
    )
    for n, (charger_id, connector_id, connector_no) in enumerate(rows):
        start = now - timedelta(hours=3 + n)
        await db.execute(
            """INSERT INTO charging_sessions (charger_id, connector_id, connector_no, id_tag,
                   id_tag_status, status, meter_start_wh, meter_stop_wh, energy_wh, started_at,
                   ended_at, currency, total_minor, subtotal_minor, vat_minor, receipt, billed_at)
               VALUES ($1, $2, $3, 'TAG', 'Accepted', 'COMPLETED', 0, 20000, 20000, $4, $5,
                       'EUR', $6, $6, 0, '{}', $5)""",
            charger_id,
            connector_id,
            connector_no,
            start,
            start + timedelta(minutes=90),
            1500 + 100 * n,
        )
    # A quarantined charger with its open alert.
    mitte = await db.fetchval(
        "SELECT charger_id FROM chargers WHERE charge_point_id = 'CP-MITTE-1'"
    )
    await db.execute(
        "UPDATE charger_connectivity SET state = 'quarantined', reason = 'imei_changed' WHERE charger_id = $1",
        mitte,
    )
    await db.execute(
        """INSERT INTO operator_alerts (charger_id, kind, reason, dedupe_key, raised_at)
           VALUES ($1, 'quarantine', 'imei_changed', 'test-q', now())""",
        mitte,
    )

    await sign_in(page, live, data["staff"][Role.OPERATOR])
    # An operator may not change prices: the page says so instead of failing.
    await page.wait_for_selector("#pricing-readonly")
    assert "operator" in await page.inner_text("#pricing-readonly")

    await page.click("#nav a[data-view=analytics]")
    await page.wait_for_selector("#an-hour-chart canvas")
    assert await page.locator(".bars li").count() == 2  # revenue per site
    assert "€" in await page.inner_text(".bars")
    assert await page.evaluate(UNLABELLED) == []
    await shot(page, "08-analytics")
    # A period before any session: a message, not a chart of zeros.
    await page.fill("#an-from", "2025-01-01")
    await page.fill("#an-to", "2025-01-07")
    await page.click("#an-form button[type=submit]")
    await page.wait_for_selector("#an-empty")
    assert "No sessions yet" in await page.inner_text("#an-empty")

    await page.click("#nav a[data-view=fleet]")
    await page.wait_for_selector("#fleet-table")
    assert "imei changed" in await page.inner_text("#fleet-table")
    assert await page.evaluate(UNLABELLED) == []
    assert "CP-MITTE-1" in await page.inner_text("#alerts-table")
    await shot(page, "09-fleet")
    await page.get_by_role("button", name="Release CP-MITTE-1 from quarantine").click()
    await page.wait_for_function(
        "() => document.querySelector('#fleet-tab-quarantined')?.textContent.startsWith('quarantined (0')"
    )
    state = await db.fetchval("SELECT state FROM charger_connectivity WHERE charger_id = $1", mitte)
    assert state != "quarantined"

    # Tablet width: no horizontal scrolling of the page itself.
    await page.set_viewport_size(TABLET)
    await page.click("#nav a[data-view=pricing]")
    await page.wait_for_selector("#price-chart canvas")
    await page.wait_for_timeout(300)
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    await shot(page, "10-pricing-tablet")
    assert_quiet(console)


async def test_keyboard_sign_in_and_wrong_code(
    data: dict[str, Any], live: str, page: Any, console: Console
) -> None:
    who = data["staff"][Role.ADMIN]
    await open_sign_in(page, live)
    # Only the keyboard: the email field has focus, Tab moves on, Enter submits.
    await page.keyboard.type(who["email"])
    await page.keyboard.press("Tab")
    await page.keyboard.type(who["password"])
    await page.keyboard.press("Tab")
    await page.keyboard.type("000000" if totp_now(who["totp_secret"]) != "000000" else "111111")
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        "() => document.querySelector('#login-error').textContent.includes('wrong')"
    )
    await page.keyboard.type(totp_now(who["totp_secret"]))
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#price-chart canvas")
    assert await page.locator("#new-tariff").count() == 1

    # Assign the tariff to one charger (charger-level) from the form.
    await page.select_option("#assign-level", "charger")
    await page.select_option("#assign-target", label="CP-PARK-1 — Berlin Park")
    await page.click("#assign-btn")
    await page.wait_for_function(
        "() => document.querySelector('#assignments caption').textContent.startsWith('3 ')"
    )
    assert "CP-PARK-1 at Berlin Park" in await page.inner_text("#assignments")

    # Schedule an edit: a new tariff, assigned from then on wherever this one applies.
    await page.fill(f"#{PEAK_PRICE}", "0.5900")
    await page.click("#preview-btn")
    await page.wait_for_selector("#quote-compare")
    start = datetime.now(UTC) + timedelta(days=2)
    local = start.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%dT%H:%M")
    await page.fill("#schedule-at", local)
    await page.click("#schedule-btn")
    await page.wait_for_function(
        "() => document.querySelector('#publish-status').textContent.startsWith('Scheduled')"
    )
    assert "at 2 sites and 1 charger" in await page.inner_text("#publish-status")
    await shot(page, "11-scheduled")
    await page.get_by_role("button", name="Open it").click()
    await page.wait_for_function(
        "() => document.querySelectorAll('#assignments .pill.scheduled').length === 3"
    )
    r = await api(live, "GET", "/admin/v1/tariffs", data["token"])
    names = [t["name"] for t in r.json()["items"]]
    assert any(n.startswith("Berlin day/night/peak (demo) (from ") for n in names)
    assert_quiet(console, (401, f"{live}/admin/v1/auth/login"))
