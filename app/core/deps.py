"""Annotated names for the app-wide dependencies (Litestar name-based injection).

Handlers write `db: Db`, `clock: ClockDep`, `staff: Staff`, `driver: Driver`,
`public_limits: PublicLimits`; `create_app()` provides them (`DEPENDENCIES` below for the
ones defined here). A domain never reads another domain's `app.state`: what is shared is
a typed dependency provided here.
"""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from litestar.datastructures import State
from litestar.di import NamedDependency

from app.core.auth import DriverPrincipal, StaffPrincipal
from app.core.clock import Clock
from app.core.ratelimit import TokenBuckets
from app.core.settings import Settings

Db: TypeAlias = NamedDependency[asyncpg.Connection]
ClockDep: TypeAlias = NamedDependency[Clock]
Staff: TypeAlias = NamedDependency[StaffPrincipal]
Driver: TypeAlias = NamedDependency[DriverPrincipal]
PublicLimits: TypeAlias = NamedDependency[TokenBuckets]


def public_limits(state: State) -> TokenBuckets:
    """The per-client token buckets of the public discovery routes (nearby search, site
    detail, quote, cheapest start): one set per process, so a client's budget is shared by
    all of them. Created on first use from the discovery rate settings."""
    buckets = state.get("public_limits")
    if buckets is None:
        # The discovery lifespan made its own before this existed; share it until it asks
        # for this one (then this fallback goes).
        buckets = state.get("discovery_limits")
    if buckets is None:
        settings: Settings = state.settings
        buckets = TokenBuckets(settings.discovery_rate_per_s, settings.discovery_burst)
    state.public_limits = buckets
    assert isinstance(buckets, TokenBuckets)
    return buckets


def provide_public_limits(state: State) -> TokenBuckets:
    """DI provider `public_limits` (synchronous: a dict lookup)."""
    return public_limits(state)
