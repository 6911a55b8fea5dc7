"""Bearer tokens for staff, role permissions and the Litestar guards that enforce them.

Staff tokens are HS256 JWTs with `typ: "staff"`; driver tokens (identity domain) carry
`typ: "driver"` and are refused here, so a driver token can never reach `/admin/v1`.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.core.db import SHARED_CONNECTION
from app.core.errors import Forbidden, Unauthorized
from app.core.settings import Settings
from app.identity.queries import family_driver

ALGORITHM = "HS256"


class Role(enum.StrEnum):
    ADMIN = "admin"
    PRICING_ADMIN = "pricing_admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Permission(enum.StrEnum):
    READ = "read"  # fleet, tariffs, audit log, analytics: every staff role
    FLEET_WRITE = "fleet_write"  # onboarding, quarantine release
    PRICING_WRITE = "pricing_write"  # tariffs and their assignments


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.PRICING_ADMIN: frozenset({Permission.READ, Permission.PRICING_WRITE}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.FLEET_WRITE}),
    Role.VIEWER: frozenset({Permission.READ}),
}


class StaffPrincipal(msgspec.Struct, frozen=True):
    staff_id: str
    email: str
    roles: tuple[Role, ...]

    def can(self, permission: Permission) -> bool:
        return any(permission in ROLE_PERMISSIONS[r] for r in self.roles)


def issue_staff_token(settings: Settings, principal: StaffPrincipal, now: datetime) -> str:
    claims = {
        "typ": "staff",
        "sub": principal.staff_id,
        "email": principal.email,
        "roles": list(principal.roles),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=settings.staff_token_ttl_s)).timestamp()),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def decode_token(settings: Settings, token: str, typ: str) -> dict[str, Any]:
    """Verified claims, or Unauthorized. `alg: none`, bad signatures and expiry all fail."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub", "typ"]},
            leeway=timedelta(seconds=5),
        )
    except jwt.PyJWTError:
        raise Unauthorized("the access token is invalid or expired") from None
    if claims.get("typ") != typ:
        raise Unauthorized("the access token is not valid here")
    return claims


def staff_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> StaffPrincipal:
    """The authenticated staff member of this request (cached on the connection)."""
    cached = connection.scope.get("state", {}).get("staff")
    if isinstance(cached, StaffPrincipal):
        return cached
    token = bearer_token(connection)
    if token is None:
        raise Unauthorized("a staff bearer token is required")
    settings: Settings = connection.app.state.settings
    claims = decode_token(settings, token, "staff")
    try:
        roles = tuple(Role(r) for r in claims.get("roles", []))
    except ValueError:
        raise Unauthorized("the access token is not valid here") from None
    principal = StaffPrincipal(
        staff_id=str(claims["sub"]), email=str(claims.get("email", "")), roles=roles
    )
    connection.scope.setdefault("state", {})["staff"] = principal
    return principal


def requires(permission: Permission) -> Any:
    """A Litestar guard: 401 without a valid staff token, 403 without the permission."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = staff_principal(connection)
        if not principal.can(permission):
            raise Forbidden(f"your role does not allow {permission.value}")

    guard.__name__ = f"requires_{permission.value}"
    return guard


async def provide_staff(request: Request[Any, Any, Any]) -> StaffPrincipal:
    """DI provider for handlers that need to know who acts (guards ran first)."""
    return staff_principal(request)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- Drivers (identity domain) -------------------------------------------------------
# Access tokens: HS256 JWT, `typ: "driver"`, `sub` = driver id, `sid` = the login family
# (one code exchange and the refresh tokens rotated from it). Revoking the family (logout,
# refresh-token reuse) ends its access tokens too: `verified_driver` checks it.


class DriverPrincipal(msgspec.Struct, frozen=True):
    driver_id: str
    family_id: str


def issue_driver_token(settings: Settings, principal: DriverPrincipal, now: datetime) -> str:
    claims = {
        "typ": "driver",
        "sub": principal.driver_id,
        "sid": principal.family_id,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=settings.driver_access_ttl_s)).timestamp()),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def driver_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> DriverPrincipal:
    """The driver named by this request's verified bearer token (signature, expiry and
    `typ` only; `provide_driver` also checks that the login is still alive)."""
    cached = connection.scope.get("state", {}).get("driver")
    if isinstance(cached, DriverPrincipal):
        return cached
    token = bearer_token(connection)
    if token is None:
        raise Unauthorized("a driver bearer token is required")
    settings: Settings = connection.app.state.settings
    claims = decode_token(settings, token, "driver")
    try:
        principal = DriverPrincipal(
            driver_id=str(uuid.UUID(str(claims["sub"]))),
            family_id=str(uuid.UUID(str(claims.get("sid")))),
        )
    except ValueError:
        raise Unauthorized("the access token is not valid here") from None
    connection.scope.setdefault("state", {})["driver"] = principal
    return principal


async def verified_driver(connection: ASGIConnection[Any, Any, Any, Any]) -> DriverPrincipal:
    """The driver of this request once the token is valid and its login still alive
    (checked once per request, then cached on the connection)."""
    state = connection.scope.setdefault("state", {})
    cached = state.get("driver_verified")
    if isinstance(cached, DriverPrincipal):
        return cached
    principal = driver_principal(connection)
    # Under an Idempotency-Key the request holds a connection already (idle while guards
    # run): ask on it rather than take a second one from the pool.
    db = state.get(SHARED_CONNECTION) or connection.app.state.pool
    driver_id = await family_driver(db, family_id=uuid.UUID(principal.family_id))
    if driver_id is None or str(driver_id) != principal.driver_id:
        raise Unauthorized("this login has ended; sign in again")
    state["driver_verified"] = principal
    return principal


# The OpenAPI security requirement of every route behind `requires_driver`.
DRIVER_SECURITY: list[dict[str, list[str]]] = [{"driverBearer": []}]


async def requires_driver(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard for every driver route. Guards run before dependencies, so a refused request
    never opens `db` (and `app.core.db.RequestTransactions` returns a connection whose
    cleanup Litestar dropped, should a dependency raise after `db` opened)."""
    await verified_driver(connection)


async def provide_driver(request: Request[Any, Any, Any]) -> DriverPrincipal:
    """DI provider `driver` (put `requires_driver` on the route, see above)."""
    return await verified_driver(request)
