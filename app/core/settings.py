"""One settings object, read from the environment once per process."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[2]


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() not in {"0", "false", "no", "off"}


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Process configuration. Every field comes from an environment variable of the same
    name in upper case; see docs/CONFIG.md."""

    database_url: str
    redis_url: str
    redis_namespace: str = "vw"
    app_demo: bool = True
    app_port: int = 8000
    app_workers: int = 2
    jwt_secret: str
    staff_token_ttl_s: int = 8 * 3600
    login_max_failures: int = 5
    login_lockout_s: int = 900
    login_ip_max_failures: int = 30
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_statement_timeout_ms: int = 15_000
    idempotency_ttl_s: int = 24 * 3600
    idempotency_wait_s: float = 10.0
    fleet_import_max_bytes: int = 64 * 1024 * 1024
    log_level: str = "INFO"
    data_dir: str = str(ROOT / ".data")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment (cached; tests build their own with `Settings(...)`)."""
    data_dir = os.environ.get("APP_DATA_DIR", str(ROOT / ".data"))
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not database_url or not redis_url:
        raise RuntimeError(
            "DATABASE_URL and REDIS_URL must be set; `python -m app run` (make run) starts "
            "embedded servers and sets them when they are missing"
        )
    jwt_secret = os.environ.get("JWT_SECRET", "")
    if not jwt_secret:
        raise RuntimeError("JWT_SECRET must be set (make run generates one in .data/)")
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_namespace=os.environ.get("REDIS_NAMESPACE", "vw"),
        app_demo=_bool("APP_DEMO", True),
        app_port=_int("APP_PORT", 8000),
        app_workers=_int("APP_WORKERS", 2),
        jwt_secret=jwt_secret,
        staff_token_ttl_s=_int("STAFF_TOKEN_TTL_S", 8 * 3600),
        login_max_failures=_int("LOGIN_MAX_FAILURES", 5),
        login_lockout_s=_int("LOGIN_LOCKOUT_S", 900),
        login_ip_max_failures=_int("LOGIN_IP_MAX_FAILURES", 30),
        db_pool_min=_int("DB_POOL_MIN", 2),
        db_pool_max=_int("DB_POOL_MAX", 10),
        db_statement_timeout_ms=_int("DB_STATEMENT_TIMEOUT_MS", 15_000),
        idempotency_ttl_s=_int("IDEMPOTENCY_TTL_S", 24 * 3600),
        idempotency_wait_s=_float("IDEMPOTENCY_WAIT_S", 10.0),
        fleet_import_max_bytes=_int("FLEET_IMPORT_MAX_BYTES", 64 * 1024 * 1024),
        log_level=os.environ.get("LOG_LEVEL", "INFO"),
        data_dir=data_dir,
    )
