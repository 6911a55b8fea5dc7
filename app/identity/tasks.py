"""Cron: forget challenges, refresh tokens and login families long past their expiry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.core.clock import Clock
from app.identity import queries

KEEP_EXPIRED = timedelta(days=1)  # a day of hindsight for support questions


async def purge_expired_identity(ctx: dict[str, Any]) -> dict[str, int]:
    clock: Clock = ctx.get("clock") or Clock()
    purged = await queries.purge_expired(ctx["pool"], before=clock.now() - KEEP_EXPIRED)
    return {"challenges": purged.challenges, "tokens": purged.tokens, "families": purged.families}
