"""OpenAPI helpers for routes that read the raw body or query string themselves: inline
msgspec schemas, query parameters from a Struct."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Litestar
from litestar.enums import ParamType
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
)


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


def schema_from_dict(d: dict[str, Any]) -> Schema:
    """A JSON Schema dict (as msgspec writes it) as Litestar's OpenAPI `Schema`."""
    kwargs: dict[str, Any] = {}
    for k, v in d.items():
        if k == "type":
            kwargs["type"] = OpenAPIType(v) if isinstance(v, str) else [OpenAPIType(x) for x in v]
        elif k == "properties":
            kwargs["properties"] = {pk: schema_from_dict(pv) for pk, pv in v.items()}
        elif k == "items":
            kwargs["items"] = schema_from_dict(v)
        elif k in ("anyOf", "oneOf", "allOf"):
            kwargs[{"anyOf": "any_of", "oneOf": "one_of", "allOf": "all_of"}[k]] = [
                schema_from_dict(x) for x in v
            ]
        elif k == "additionalProperties":
            kwargs["additional_properties"] = v if isinstance(v, bool) else schema_from_dict(v)
        elif k in (
            "minLength",
            "maxLength",
            "minItems",
            "maxItems",
            "exclusiveMinimum",
            "exclusiveMaximum",
        ):
            kwargs[
                {
                    "minLength": "min_length",
                    "maxLength": "max_length",
                    "minItems": "min_items",
                    "maxItems": "max_items",
                    "exclusiveMinimum": "exclusive_minimum",
                    "exclusiveMaximum": "exclusive_maximum",
                }[k]
            ] = v
        elif k in (
            "required",
            "enum",
            "pattern",
            "minimum",
            "maximum",
            "title",
            "description",
            "default",
        ):
            kwargs[k] = v
    return Schema(**kwargs)


def finalize_openapi(app: Litestar) -> None:
    """Describe our error contract in the generated document: invalid input is a 422
    problem (not Litestar's default 400), and guarded admin routes answer 401/403
    problems. Runs once, before the document is first served or exported."""
    from app.core.errors import Problem

    openapi = app.openapi_schema
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    openapi.components.schemas["Problem"] = schema_from_dict(inline_schema(Problem))
    problem = {
        "application/problem+json": OpenAPIMediaType(
            schema=Reference(ref="#/components/schemas/Problem")
        )
    }
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            op = getattr(item, method, None)
            if op is None:
                continue
            responses = op.responses if op.responses is not None else {}
            responses.pop("400", None)
            responses["422"] = OpenAPIResponse(
                description="Invalid input (`validation_failed`, with `errors`)", content=problem
            )
            if path.startswith("/admin/v1") and not path.startswith("/admin/v1/auth"):
                responses["401"] = OpenAPIResponse(
                    description="No valid staff token (`unauthorized`)", content=problem
                )
                responses["403"] = OpenAPIResponse(
                    description="The role lacks the permission (`forbidden`)", content=problem
                )
            op.responses = responses


def query_parameters(params: type[msgspec.Struct]) -> list[Parameter]:
    """OpenAPI query parameters from a Struct's fields (types, bounds, defaults), for
    routes that parse their query string themselves (`app/core/query.py`)."""
    out: list[Parameter] = []
    for f in msgspec.structs.fields(params):
        schema = inline_schema(f.type)
        if f.default is not msgspec.NODEFAULT and f.default is not None:
            schema["default"] = f.default
        out.append(
            Parameter(
                name=f.encode_name,
                param_in=ParamType.QUERY,
                schema=schema_from_dict(schema),
                required=f.required,
            )
        )
    return out


def query_operation(params: type[msgspec.Struct]) -> type[Operation]:
    """An `operation_class` documenting `params` as the operation's query parameters."""

    @dataclass
    class QueryOperation(Operation):
        def __post_init__(self) -> None:
            self.parameters = [*(self.parameters or []), *query_parameters(params)]

    return QueryOperation
