"""Two arq crons. The platform sweep: `GET /devices?modifiedSince=` since the last good
sweep, folded into the chargers' platform signals. The link sweep: chargers whose evidence
ran out (no heartbeat for 2.5 × interval, socket down past the grace, no data session for
OFFLINE_AFTER) are settled offline, and outages longer than OFFLINE_ALERT_AFTER_S alert.

If the platform cannot be reached, nothing changes state: the last known signals stay and
only `stale` turns true once they are older than `CONTROL_CENTER_STALE_AFTER_S`, so the
fleet is never hidden wholesale because the platform is down.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from app.connectivity import alerts, queries, service
from app.connectivity.client import ClientConfig, ControlCenterClient, ControlCenterError
from app.core.clock import Clock
from app.core.settings import Settings

log = logging.getLogger("app.connectivity.tasks")

# The listing has no modification dates: resume a little before the last sweep started.
SWEEP_MARGIN: Final = timedelta(minutes=2)
FIRST_SINCE: Final = datetime(2000, 1, 1, tzinfo=UTC)


def build_client(settings: Settings) -> ControlCenterClient | None:
    if not settings.control_center_api_base:
        return None
    return ControlCenterClient(
        settings.control_center_api_base,
        settings.control_center_username,
        settings.control_center_api_key,
        config=ClientConfig(requests_per_s=settings.control_center_requests_per_s),
    )


async def close_client(ctx: dict[str, Any]) -> None:
    """Worker shutdown: close the platform client's HTTP session."""
    client = ctx.pop("control_center_client", None)
    if client is not None:
        await client.aclose()


async def sweep_connectivity(ctx: dict[str, Any]) -> dict[str, Any]:
    """One incremental sweep; returns what it did (for arq's result and the tests)."""
    settings: Settings = ctx["settings"]
    pool = ctx["pool"]
    clock: Clock = ctx.get("clock") or Clock()
    client: ControlCenterClient | None = ctx.get("control_center_client")
    if client is None:
        client = build_client(settings)
        if client is None:
            return {"ok": False, "skipped": "CONTROL_CENTER_API_BASE is not set"}
        ctx["control_center_client"] = client
    started = clock.now()
    cursor = await queries.sweep_cursor(pool)
    since = FIRST_SINCE if cursor is None else cursor - SWEEP_MARGIN
    statuses: dict[str, str | None] = {}
    try:
        async for device in client.iter_modified_devices(since):
            statuses[device.iccid] = device.status  # a later record is newer
    except ControlCenterError as exc:
        log.warning(
            "connectivity sweep failed: %s %s %s", exc.status, exc.error_code, exc.error_message
        )
        bound = started - timedelta(seconds=settings.control_center_stale_after_s)
        async with pool.acquire() as conn, conn.transaction():
            marked = await queries.mark_stale(conn, older_than=bound)
            await queries.save_sweep_error(conn, error=f"{exc.status} {exc.error_code}", at=started)
        return {"ok": False, "error": exc.error_code, "marked_stale": marked}

    config = service.health_config(settings)
    changed = 0
    async with pool.acquire() as conn, conn.transaction():
        ours = await queries.fleet_iccids(conn, iccids=list(statuses))
        for iccid in sorted(ours):  # a fixed lock order
            row = await service.lock_signals(conn, iccid=iccid)
            if row is None:
                continue
            status = statuses.get(iccid)
            if status and service.is_newer(started, row.sim_status_at):
                row.sim_status, row.sim_status_at = status.strip().upper(), started
            row.platform_last_ok_at = started
            await service.store_signals(conn, row)
            if await service.settle(conn, row, config, started, source="sweep"):
                changed += 1
        await queries.touch_platform_ok(conn, at=started)
        await queries.save_sweep_ok(conn, started=started)
    return {"ok": True, "devices": len(statuses), "fleet": len(ours), "changed": changed}


async def sweep_links(ctx: dict[str, Any]) -> dict[str, Any]:
    """Settle the visible chargers whose link evidence ran out, then raise the alerts of
    long outages; returns what it did (for arq's result and the tests)."""
    settings: Settings = ctx["settings"]
    pool = ctx["pool"]
    clock: Clock = ctx.get("clock") or Clock()
    cfg = service.config_from(settings)
    rules = cfg.health
    now = clock.now()
    due = await queries.links_due(
        pool,
        now=now,
        grace_s=rules.grace_s,
        silent_s=rules.heartbeat_factor * rules.default_heartbeat_interval_s,
        no_session_s=rules.offline_after_s,
    )
    changed = 0
    for charger_id in due:  # one short transaction each: the OCPP handlers keep flowing
        async with pool.acquire() as conn, conn.transaction():
            _, did = await service.settle_charger(conn, charger_id, rules, now, source="sweep:link")
            changed += did
    async with pool.acquire() as conn, conn.transaction():
        raised = await alerts.raise_offline_alerts(conn, now, cfg.offline_alert_after_s)
        open_alerts = await alerts.refresh_open_gauge(conn)
    return {"due": len(due), "changed": changed, "alerts": raised, "open_alerts": open_alerts}
