"""The application is built here, in one small `create_app()`; each domain exposes ROUTES."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from app.admin import routes as admin_routes
from app.admin_page import routes as admin_page_routes
from app.analytics import routes as analytics_routes
from app.chargers import routes as charger_routes
from app.connectivity import routes as connectivity_routes
from app.core import gcpolicy as gc_policy
from app.core.auth import provide_driver, provide_staff
from app.core.clock import provide_clock
from app.core.db import RequestTransactions, create_pool, provide_db
from app.core.deps import provide_public_limits
from app.core.errors import EXCEPTION_HANDLERS
from app.core.idempotency import IdempotencyMiddleware
from app.core.limits import LimitedRequest, RequestLimitsMiddleware
from app.core.migrations import migrate
from app.core.observability import ObservabilityMiddleware, configure_logging
from app.core.openapi import finalize_openapi
from app.core.redis import create_redis
from app.core.settings import Settings, get_settings
from app.discovery import routes as discovery_routes
from app.fleet import routes as fleet_routes
from app.health import routes as health_routes
from app.identity import routes as identity_routes
from app.notifications import routes as notification_routes
from app.payments import routes as payment_routes
from app.pricing import routes as pricing_routes
from app.reservations import routes as reservation_routes
from app.sessions import routes as session_routes

ROUTES: list[Any] = [
    *health_routes.ROUTES,
    *admin_routes.ROUTES,
    *fleet_routes.ROUTES,
    *connectivity_routes.ROUTES,
    *discovery_routes.ROUTES,
    *identity_routes.ROUTES,
    *notification_routes.ROUTES,
    *charger_routes.ROUTES,
    *pricing_routes.ROUTES,
    *reservation_routes.ROUTES,
    *analytics_routes.ROUTES,
    *admin_page_routes.ROUTES,
    *payment_routes.ROUTES,
    *session_routes.ROUTES,
]
# Domain lifespans run after the core one (pool, Redis) has started.
LIFESPANS: list[Any] = [
    connectivity_routes.lifespan,
    charger_routes.lifespan,
    pricing_routes.lifespan,
    discovery_routes.lifespan,
    payment_routes.lifespan,
    session_routes.lifespan,  # after payments and chargers (uses both)
    gc_policy.lifespan,  # last: freezes what start-up loaded
]

# Outermost first: request id + metrics around everything, then Idempotency-Key replays.
MIDDLEWARE: list[Any] = [
    DefineMiddleware(ObservabilityMiddleware, access_log=os.environ.get("ACCESS_LOG", "1") != "0"),  # type: ignore[arg-type]
    RequestLimitsMiddleware,  # body size, query size, NUL: before anything reads the body
    IdempotencyMiddleware,
    RequestTransactions,  # innermost: no request leaves a pooled connection checked out
]

OPENAPI = OpenAPIConfig(
    title="Voltway API",
    version="1.0.0",
    description="Driver app, CPO admin and integration endpoints. Errors are RFC 9457 "
    "problem details (`application/problem+json`) with a stable `code`.",
    path="/schema",
    render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
    components=Components(
        security_schemes={
            "driverBearer": SecurityScheme(
                type="http",
                scheme="bearer",
                bearer_format="JWT",
                description="Driver access token from `POST /v1/auth/token`",
            )
        }
    ),
)


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> Litestar:
    """Build the ASGI app. Settings default to the environment (read at start-up)."""
    # Demo-only routes (the SMS sink's GET /dev/sms) exist only when their settings say so.
    demo_routes = [
        *notification_routes.demo_routes(settings or get_settings()),
        *payment_routes.demo_routes(settings or get_settings()),
    ]

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        cfg = settings or get_settings()
        configure_logging(cfg.log_level)
        app.state.settings = cfg
        finalize_openapi(app)
        if run_migrations:
            try:
                await migrate(cfg.database_url)
            except (OSError, TimeoutError) as exc:  # `python -m app run` migrated already
                logging.getLogger("app").warning("migrations skipped: %r", exc)
        app.state.pool = await create_pool(cfg)
        app.state.redis = create_redis(cfg)
        try:
            yield
        finally:
            await app.state.redis.aclose()
            await app.state.pool.close()

    return Litestar(
        route_handlers=[*ROUTES, *demo_routes],
        lifespan=[lifespan, *LIFESPANS],
        dependencies={
            "db": Provide(provide_db),
            "clock": Provide(provide_clock, sync_to_thread=False),
            "staff": Provide(provide_staff),
            "driver": Provide(provide_driver),
            "public_limits": Provide(provide_public_limits, sync_to_thread=False),
        },
        middleware=MIDDLEWARE,
        request_class=LimitedRequest,
        request_max_body_size=None,  # enforced per route by RequestLimitsMiddleware
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OPENAPI,
        state=State({"settings": settings}),
        debug=False,
    )
