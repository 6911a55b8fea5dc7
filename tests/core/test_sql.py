"""Named SQL: every name the code asks for exists, and every block parses as SQL."""

from __future__ import annotations

import re
import uuid

import asyncpg
import msgspec
import pytest

from app.core.settings import ROOT
from app.core.sql import Q, all_queries, fetch_returned, parse

USE = re.compile(r"""\bQ\(\s*["']([a-z0-9_.]+)["']\s*\)""")
# Typed query helpers (`app/core/sql.py`): `fetch_one(db, "domain.name", …)` and friends.
TYPED = re.compile(
    r"""\b(?:fetch_one|fetch_returned|fetch_all|fetch_val|execute)\(\s*[\w.]+\s*,\s*["']([a-z0-9_.]+)["']"""
)


class Found(msgspec.Struct):
    driver_id: uuid.UUID


def _names_used() -> set[str]:
    used: set[str] = set()
    for folder in ("app", "workers"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            used.update(USE.findall(text))
            used.update(TYPED.findall(text))
    return used


def test_every_query_the_code_uses_exists() -> None:
    used = _names_used()
    assert used, "the scan found no Q(...) calls; the regex is broken"
    missing = used - set(all_queries())
    assert not missing, f"code asks for queries that sql/queries/ lacks: {sorted(missing)}"


def test_the_scan_sees_typed_query_functions() -> None:
    # the outbox is written with the typed helpers; if the scan missed them it would pass
    # vacuously for every queries.py module
    assert {"outbox.insert", "outbox.claim_due"} <= _names_used()


async def test_a_block_that_must_answer_a_row_and_does_not_raises(db: asyncpg.Connection) -> None:
    # fetch_returned is for INSERT … RETURNING and aggregates; an empty answer is a bug
    # and must not pass as None into code typed to receive a row.
    with pytest.raises(RuntimeError, match=r"identity\.family_is_active answered no row"):
        await fetch_returned(db, "identity.family_is_active", Found, uuid.uuid4())


def test_unknown_name_raises() -> None:
    with pytest.raises(KeyError, match="no SQL query named"):
        Q("fleet.does_not_exist")


def test_parse_blocks_and_descriptions() -> None:
    text = "-- name: a\n-- First.\nSELECT 1;\n\n-- name: b\n-- Second.\nSELECT 2\n"
    queries = parse(text, "x")
    assert [q.name for q in queries.values()] == ["x.a", "x.b"]
    assert queries["x.a"].sql == "SELECT 1"
    assert queries["x.b"].description == "Second."


async def test_every_query_prepares_against_the_schema(db: asyncpg.Connection) -> None:
    for name, query in all_queries().items():
        try:
            await db.prepare(query.sql)
        except asyncpg.PostgresError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{name}: {exc}")
