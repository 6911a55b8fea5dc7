"""Opaque list cursors: `{"items": [...], "next_cursor": "..."|null}` with `?limit=&cursor=`."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from app.core.errors import FieldError, ValidationFailed


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(values)).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = msgspec.json.decode(base64.urlsafe_b64decode(padded.encode()))
    except Exception:
        values = None
    if not isinstance(values, list) or len(values) != arity:
        raise ValidationFailed(
            "cursor is not valid", errors=[FieldError(field="cursor", message="not a cursor")]
        )
    return values
