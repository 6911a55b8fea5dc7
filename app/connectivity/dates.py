"""Dates in the connectivity platform's style (`2016-06-29 00:29:04.271+0000`) and RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime

# Longest sensible timestamp; anything longer is not a date and is not worth parsing.
_MAX_LEN = 64


def parse_platform_datetime(value: str) -> datetime:
    """An aware datetime from the platform's style or RFC 3339; a value without an offset
    is taken as UTC (the platform reports UTC). Raises ValueError otherwise."""
    text = value.strip()
    if not text or len(text) > _MAX_LEN:
        raise ValueError("not a timestamp")
    # Python 3.11's fromisoformat takes both `T` and a space, `Z`, `+0000` and `+00:00`.
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def parse_optional_datetime(value: object) -> datetime | None:
    """Like `parse_platform_datetime`, but None/blank give None (the platform sends null
    for "never"). Raises ValueError for a non-blank value that is not a date."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError("not a timestamp")
    if not value.strip():
        return None
    return parse_platform_datetime(value)


def format_platform_datetime(value: datetime) -> str:
    """`2016-06-29 00:29:04.271+0000`, in UTC, millisecond precision."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def format_query_datetime(value: datetime) -> str:
    """ISO 8601 for query parameters such as `modifiedSince` (`2016-04-18T17:31:34+00:00`)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).isoformat(timespec="seconds")
