"""Cron: forget challenges, refresh tokens and login families long past their expiry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.core.clock import Clock
from app.core.sql import Q

KEEP_EXPIRED = timedelta(days=1)  # a day of hindsight for support questions


async def purge_expired_identity(ctx: dict[str, Any]) -> dict[str, int]:
    clock: Clock = ctx.get("clock") or Clock()
    row = await ctx["pool"].fetchrow(Q("identity.purge_expired"), clock.now() - KEEP_EXPIRED)
    return {k: int(row[k]) for k in ("challenges", "tokens", "families")}
