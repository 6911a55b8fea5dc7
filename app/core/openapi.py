"""OpenAPI helpers: inline msgspec schemas for routes that read the raw body themselves."""

from __future__ import annotations

from typing import Any

import msgspec


def inline_schema(type_: Any) -> dict[str, Any]:
    """msgspec's JSON Schema with every `$ref` into `$defs` inlined (no recursion here)."""
    schema = msgspec.json.schema(type_)
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
