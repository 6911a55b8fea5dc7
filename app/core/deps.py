"""Annotated names for the app-wide dependencies (Litestar name-based injection).

Handlers write `db: Db`, `clock: ClockDep`, `staff: Staff`, `driver: Driver`;
`create_app()` provides them.
"""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from litestar.di import NamedDependency

from app.core.auth import DriverPrincipal, StaffPrincipal
from app.core.clock import Clock

Db: TypeAlias = NamedDependency[asyncpg.Connection]
ClockDep: TypeAlias = NamedDependency[Clock]
Staff: TypeAlias = NamedDependency[StaffPrincipal]
Driver: TypeAlias = NamedDependency[DriverPrincipal]
