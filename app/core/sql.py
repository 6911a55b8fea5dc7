"""Named SQL queries loaded from `sql/queries/*.sql`.

Each block starts with `-- name: <domain>.<name>` followed by a one-line `-- ` description;
the SQL runs until the next `-- name:`. Code asks for queries by name; an unknown name
raises at import time of the asking module (see `Q`), and a test checks every name used.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from app.core.settings import ROOT

QUERIES_DIR = ROOT / "sql" / "queries"
_NAME = re.compile(r"^--\s*name:\s*([a-z0-9_.]+)\s*$", re.MULTILINE)


class Query(NamedTuple):
    """A named SQL block with its one-line description."""

    sql: str
    name: str
    description: str


def parse(text: str, domain: str) -> dict[str, Query]:
    """Split one file into named queries; names are prefixed with the file's domain."""
    out: dict[str, Query] = {}
    matches = list(_NAME.finditer(text))
    for i, m in enumerate(matches):
        body = text[m.end() : matches[i + 1].start() if i + 1 < len(matches) else len(text)]
        lines = body.strip("\n").splitlines()
        description = ""
        if lines and lines[0].startswith("--"):
            description = lines[0].lstrip("-").strip()
            lines = lines[1:]
        sql = "\n".join(lines).strip().rstrip(";")
        name = f"{domain}.{m.group(1)}"
        if name in out:
            raise ValueError(f"duplicate query name {name}")
        out[name] = Query(sql, name, description)
    return out


@lru_cache(maxsize=1)
def all_queries(directory: Path = QUERIES_DIR) -> dict[str, Query]:
    """Every named query, loaded once per process."""
    out: dict[str, Query] = {}
    for path in sorted(directory.glob("*.sql")):
        out.update(parse(path.read_text(), path.stem))
    return out


def Q(name: str) -> str:
    """The SQL of the query called `name` (`<file>.<block>`); KeyError names what is missing.
    (asyncpg wants an exact `str`, so the SQL text itself is returned.)"""
    try:
        return all_queries()[name].sql
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in sql/queries/") from None
