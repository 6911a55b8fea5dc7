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


def _list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return tuple(x.strip().upper() for x in raw.split(",") if x.strip())


# Where the demo operator runs (EU/EEA, CH, UK): SMS-pumping fraud targets far-away
# premium ranges, so a login from elsewhere is refused unless OTP_ALLOWED_COUNTRIES says so.
DEFAULT_OTP_COUNTRIES: tuple[str, ...] = (
    *("AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR"),
    *("HR", "HU", "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT"),
    *("RO", "SE", "SI", "SK"),
)


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
    # Abuse limits for every request (app/core/limits.py); routes may raise the body limit.
    request_max_body_bytes: int = 1024 * 1024
    request_max_query_bytes: int = 8192
    request_max_query_params: int = 64
    # Peers whose X-Forwarded-For is believed (CIDRs, comma-separated; app/core/clientaddr.py).
    trusted_proxies: tuple[str, ...] = ()
    log_level: str = "INFO"
    data_dir: str = str(ROOT / ".data")
    discovery_rate_per_s: float = 20.0
    discovery_burst: float = 40.0
    discovery_resync_s: float = 600.0
    geocoder_url: str = ""
    # Driver identity (SMS-code login). Limits are counts per window (seconds).
    driver_access_ttl_s: int = 15 * 60
    driver_refresh_ttl_s: int = 30 * 24 * 3600
    otp_ttl_s: int = 300
    otp_max_attempts: int = 5
    otp_resend_after_s: int = 30
    otp_phone_max: int = 5
    otp_phone_window_s: int = 3600
    otp_ip_max: int = 20
    otp_ip_window_s: int = 3600
    otp_prefix_max: int = 300
    otp_prefix_window_s: int = 3600
    sms_hourly_budget: int = 1000
    # ISO 3166 regions whose mobile numbers may log in; empty = every region.
    otp_allowed_countries: tuple[str, ...] = DEFAULT_OTP_COUNTRIES
    # Twilio (INTEGRATIONS.md §4); without sid/token/from, demo mode uses the SMS sink.
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from: str = ""  # a sender number (E.164) or a Messaging Service SID (MG…)
    twilio_api_base: str = ""
    twilio_timeout_s: float = 10.0
    twilio_max_retries: int = 3
    # SMS alerts (issue 13): per-sender pacing (messages/s; 0 = off; SMS_SENDER_RATES names
    # senders: "+4915…=1,MG…=100"), the public URL Twilio signs its webhooks against, and
    # where operator alerts go (an on-call number, a ticketing webhook signed HMAC-SHA256).
    sms_rate_per_sender: float = 1.0
    sms_sender_rates: str = ""
    public_base_url: str = ""
    oncall_sms_to: str = ""
    ticket_webhook_url: str = ""
    ticket_webhook_secret: str = ""
    # Connectivity platform (INTEGRATIONS.md §2). Without a push secret every push is refused.
    control_center_api_base: str = ""
    control_center_username: str = ""
    control_center_api_key: str = ""
    control_center_push_secret: str = ""
    control_center_push_max_age_s: float = 300.0
    control_center_requests_per_s: float = 5.0
    control_center_stale_after_s: float = 900.0
    # Connectivity health rules and operator alerts (app/connectivity/rules.py).
    connectivity_heartbeat_factor: float = 2.5
    connectivity_offline_after_s: float = 600.0
    offline_alert_after_s: float = 900.0
    connectivity_flap_threshold: int = 5
    connectivity_flap_window_s: float = 600.0
    # OCPP 1.6J link (INTEGRATIONS.md §1-2): heartbeat interval given at boot, and how long
    # a dropped socket may stay down before the charger counts as offline.
    ocpp_heartbeat_interval_s: int = 60
    ocpp_offline_grace_s: float = 60.0
    ocpp_max_frame_bytes: int = 65536
    # Stripe (INTEGRATIONS.md §3). Without a secret key, `make run` starts localstripe in
    # demo mode and sets STRIPE_SECRET_KEY / STRIPE_API_BASE for the children.
    stripe_secret_key: str = ""
    stripe_api_base: str = ""
    stripe_webhook_secret: str = ""
    stripe_webhook_tolerance_s: int = 300
    stripe_timeout_s: float = 10.0
    stripe_max_network_retries: int = 2
    # Pre-authorisation hold when the site does not say otherwise (minor units, e.g. €50).
    payment_hold_minor: int = 5000
    payment_capture_max_attempts: int = 8
    payment_stale_hold_s: float = 24 * 3600.0
    # Charging sessions (app/sessions): how long the charger may take to answer
    # RemoteStartTransaction, to start a transaction it accepted, and how long a hold
    # placed while a charger waits (Authorize / StartTransaction) may take.
    session_remote_start_timeout_s: float = 15.0
    session_start_timeout_s: float = 180.0
    session_charger_hold_timeout_s: float = 8.0
    session_max_holds: int = 2

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from)


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
        request_max_body_bytes=_int("REQUEST_MAX_BODY_BYTES", 1024 * 1024),
        request_max_query_bytes=_int("REQUEST_MAX_QUERY_BYTES", 8192),
        request_max_query_params=_int("REQUEST_MAX_QUERY_PARAMS", 64),
        trusted_proxies=_list("TRUSTED_PROXIES", ()),
        log_level=os.environ.get("LOG_LEVEL", "INFO"),
        data_dir=data_dir,
        discovery_rate_per_s=_float("DISCOVERY_RATE_PER_S", 20.0),
        discovery_burst=_float("DISCOVERY_BURST", 40.0),
        discovery_resync_s=_float("DISCOVERY_RESYNC_S", 600.0),
        geocoder_url=os.environ.get("GEOCODER_URL", ""),
        driver_access_ttl_s=_int("DRIVER_ACCESS_TTL_S", 15 * 60),
        driver_refresh_ttl_s=_int("DRIVER_REFRESH_TTL_S", 30 * 24 * 3600),
        otp_ttl_s=_int("OTP_TTL_S", 300),
        otp_max_attempts=_int("OTP_MAX_ATTEMPTS", 5),
        otp_resend_after_s=_int("OTP_RESEND_AFTER_S", 30),
        otp_phone_max=_int("OTP_PHONE_MAX", 5),
        otp_phone_window_s=_int("OTP_PHONE_WINDOW_S", 3600),
        otp_ip_max=_int("OTP_IP_MAX", 20),
        otp_ip_window_s=_int("OTP_IP_WINDOW_S", 3600),
        otp_prefix_max=_int("OTP_PREFIX_MAX", 300),
        otp_prefix_window_s=_int("OTP_PREFIX_WINDOW_S", 3600),
        sms_hourly_budget=_int("SMS_HOURLY_BUDGET", 1000),
        otp_allowed_countries=_list("OTP_ALLOWED_COUNTRIES", DEFAULT_OTP_COUNTRIES),
        twilio_account_sid=os.environ.get("TWILIO_ACCOUNT_SID", ""),
        twilio_auth_token=os.environ.get("TWILIO_AUTH_TOKEN", ""),
        twilio_from=os.environ.get("TWILIO_FROM", ""),
        twilio_api_base=os.environ.get("TWILIO_API_BASE", ""),
        twilio_timeout_s=_float("TWILIO_TIMEOUT_S", 10.0),
        twilio_max_retries=_int("TWILIO_MAX_RETRIES", 3),
        sms_rate_per_sender=_float("SMS_RATE_PER_SENDER", 1.0),
        sms_sender_rates=os.environ.get("SMS_SENDER_RATES", ""),
        public_base_url=os.environ.get("PUBLIC_BASE_URL", ""),
        oncall_sms_to=os.environ.get("ONCALL_SMS_TO", ""),
        ticket_webhook_url=os.environ.get("TICKET_WEBHOOK_URL", ""),
        ticket_webhook_secret=os.environ.get("TICKET_WEBHOOK_SECRET", ""),
        control_center_api_base=os.environ.get("CONTROL_CENTER_API_BASE", ""),
        control_center_username=os.environ.get("CONTROL_CENTER_USERNAME", ""),
        control_center_api_key=os.environ.get("CONTROL_CENTER_API_KEY", ""),
        control_center_push_secret=os.environ.get("CONTROL_CENTER_PUSH_SECRET", ""),
        control_center_push_max_age_s=_float("CONTROL_CENTER_PUSH_MAX_AGE_S", 300.0),
        control_center_requests_per_s=_float("CONTROL_CENTER_REQUESTS_PER_S", 5.0),
        control_center_stale_after_s=_float("CONTROL_CENTER_STALE_AFTER_S", 900.0),
        connectivity_heartbeat_factor=_float("CONNECTIVITY_HEARTBEAT_FACTOR", 2.5),
        connectivity_offline_after_s=_float("CONNECTIVITY_OFFLINE_AFTER_S", 600.0),
        offline_alert_after_s=_float("OFFLINE_ALERT_AFTER_S", 900.0),
        connectivity_flap_threshold=_int("CONNECTIVITY_FLAP_THRESHOLD", 5),
        connectivity_flap_window_s=_float("CONNECTIVITY_FLAP_WINDOW_S", 600.0),
        ocpp_heartbeat_interval_s=_int("OCPP_HEARTBEAT_INTERVAL_S", 60),
        ocpp_offline_grace_s=_float("OCPP_OFFLINE_GRACE_S", 60.0),
        ocpp_max_frame_bytes=_int("OCPP_MAX_FRAME_BYTES", 65536),
        stripe_secret_key=os.environ.get("STRIPE_SECRET_KEY", ""),
        stripe_api_base=os.environ.get("STRIPE_API_BASE", ""),
        stripe_webhook_secret=os.environ.get("STRIPE_WEBHOOK_SECRET", ""),
        stripe_webhook_tolerance_s=_int("STRIPE_WEBHOOK_TOLERANCE_S", 300),
        stripe_timeout_s=_float("STRIPE_TIMEOUT_S", 10.0),
        stripe_max_network_retries=_int("STRIPE_MAX_NETWORK_RETRIES", 2),
        payment_hold_minor=_int("PAYMENT_HOLD_MINOR", 5000),
        payment_capture_max_attempts=_int("PAYMENT_CAPTURE_MAX_ATTEMPTS", 8),
        payment_stale_hold_s=_float("PAYMENT_STALE_HOLD_S", 24 * 3600.0),
        session_remote_start_timeout_s=_float("SESSION_REMOTE_START_TIMEOUT_S", 15.0),
        session_start_timeout_s=_float("SESSION_START_TIMEOUT_S", 180.0),
        session_charger_hold_timeout_s=_float("SESSION_CHARGER_HOLD_TIMEOUT_S", 8.0),
        session_max_holds=_int("SESSION_MAX_HOLDS", 2),
    )
