"""The committed openapi/openapi.json is what the code generates (run `make openapi`)."""

from __future__ import annotations

import json

from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.settings import ROOT
from app.openapi_export import export


def test_committed_openapi_is_in_sync() -> None:
    committed = (ROOT / "openapi" / "openapi.json").read_text()
    assert committed == export(), "openapi/openapi.json is stale: run `make openapi`"


async def test_schema_and_docs_are_served(client: AsyncTestClient[Litestar]) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    assert "/admin/v1/fleet/import" in r.json()["paths"]
    assert "Problem" in r.json()["components"]["schemas"]
    r = await client.get("/schema")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]


def test_errors_are_documented_as_problem_details() -> None:
    doc = json.loads(export())
    assert "Problem" in doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            # API.md: a bad Stripe-Signature is 400 (Stripe's own convention); nowhere else
            if path != "/webhooks/stripe":
                assert "400" not in op["responses"], f"{method} {path} documents Litestar's 400"
            else:
                assert op["responses"]["400"]["content"].keys() == {"application/problem+json"}
            assert "422" in op["responses"], f"{method} {path} lacks the 422 problem"
            if path.startswith("/admin/v1/") and "/auth/" not in path:
                assert {"401", "403"} <= set(op["responses"]), f"{method} {path}"


def test_no_one_of_that_an_integer_satisfies_twice() -> None:
    """`oneOf: [integer, number]` refuses every integer (it matches both branches): the
    fuzzer then expects `"vat_percent": 0` to be refused, and clients' validators refuse it."""
    spec = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    found: list[str] = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            kinds = [b.get("type") for b in node.get("oneOf", []) if isinstance(b, dict)]
            if "integer" in kinds and "number" in kinds:
                found.append(where)
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(spec, "")
    assert found == []
