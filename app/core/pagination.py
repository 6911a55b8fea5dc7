"""Opaque list cursors: `{"items": [...], "next_cursor": "..."|null}` with `?limit=&cursor=`.

A cursor is the sort key of the last item of a page, JSON in URL-safe base64. It comes back
from the client, so it is untrusted: `decode_cursor` decodes it into the declared key type
(a tuple of `CursorInt`, `CursorText`, `datetime`, `uuid.UUID`, …) and anything else —
not base64, not JSON, the wrong arity or types, an integer beyond PostgreSQL's `bigint`, a
NUL byte in text, a naive time — is 422 `validation_failed` on the field `cursor`, never a
500 from the query it would have fed.

    Key = tuple[datetime, CursorInt]
    after = decode_cursor(cursor, Key)        # Key | None
    next_cursor = encode_cursor((last.at, last.audit_id))
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec

from app.core.errors import FieldError, ValidationFailed

T = TypeVar("T")

# What a cursor may carry into a query parameter.
CursorInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
CursorText = Annotated[str, msgspec.Meta(max_length=1024, pattern=r"^[^\x00]*$")]
CursorTime = Annotated[datetime, msgspec.Meta(tz=True)]
CursorUuid = uuid.UUID
MAX_CURSOR_LEN = 4096


def encode_cursor(key: tuple[Any, ...] | list[Any]) -> str:
    """The opaque cursor for a page that ends at `key` (datetimes, UUIDs, ints, strings)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(cursor: str | None, key_type: type[T]) -> T | None:
    """The key a cursor carries, checked against `key_type`; None for no cursor."""
    if not cursor:
        return None
    try:
        if len(cursor) > MAX_CURSOR_LEN:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii"))
        return msgspec.json.decode(raw, type=key_type)
    except (ValueError, UnicodeError, binascii.Error, msgspec.DecodeError):
        # msgspec.ValidationError is a DecodeError; ValueError covers bad base64 too.
        raise ValidationFailed(
            "cursor is not valid", errors=[FieldError(field="cursor", message="not a cursor")]
        ) from None
