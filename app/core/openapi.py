"""OpenAPI helpers for routes that read the raw body or query string themselves: inline
msgspec schemas, query parameters from a Struct."""

from __future__ import annotations

from dataclasses import dataclass, is_dataclass
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
    SecurityScheme,
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


LITESTAR_400 = "Bad request syntax or unsupported method"


def _security_names(op: Operation) -> set[str]:
    return {name for req in (op.security or []) for name in req}


def _response_classes(path: str, method: str, op: Operation) -> dict[str, str]:
    """The error answers every operation of a kind can give, by what the core does to it
    (limits, guards, problem mapping), so no route has to repeat them. The route's own
    `responses=` come on top; a status it documents itself is kept as it wrote it."""
    out = {"422": "Invalid input (`validation_failed`, with `errors`)"}
    params = op.parameters or []
    if op.request_body is not None:
        out["413"] = "The body is larger than this route accepts (`payload_too_large`)"
    if any(getattr(p, "param_in", None) == ParamType.PATH for p in params):
        out["404"] = "No such resource, or it is someone else's (`not_found` or a domain code)"
    if path.startswith("/admin/v1") and not path.startswith("/admin/v1/auth"):
        out["401"] = "No valid staff token (`unauthorized`)"
        out["403"] = "The role lacks the permission (`forbidden`)"
    if path.startswith("/admin/v1/auth/"):
        out["401"] = "Email, password or TOTP code wrong (`invalid_credentials`)"
        out["429"] = "Too many failed logins from this address (`rate_limited`)"
    if "driverBearer" in _security_names(op):
        out["401"] = "No valid driver token, or the login has ended (`unauthorized`)"
    optional_token = not op.security or any(not req for req in op.security)
    if method == "get" and path.startswith("/v1/") and optional_token:
        # Public discovery (API.md): rate-limited per client.
        out["429"] = "Too many requests from this client (`rate_limited`, `Retry-After`)"
    if any(
        getattr(p, "name", None) == "q" and getattr(p, "param_in", None) == ParamType.QUERY
        for p in params
    ):
        out["503"] = "Place search (`q`) without a configured geocoder (`geocoder_unavailable`)"
    if path.startswith("/webhooks/"):
        out["413"] = "The body is larger than this webhook accepts (`payload_too_large`)"
        if "400" not in (op.responses or {}):
            out["403"] = "The signature is missing, wrong or stale (`invalid_signature`)"
    return out


def _drop_overlapping_integer(node: Any, seen: set[int]) -> None:
    """Litestar writes `int | float` as `oneOf: [integer, number]`, which no integer
    satisfies (it matches both, and `oneOf` wants exactly one): a fuzzer then sends `0`
    expecting a refusal. `number` already admits integers, so the integer branch goes."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, Schema):
        if node.one_of:
            kinds = {s.type for s in node.one_of if isinstance(s, Schema)}
            if OpenAPIType.INTEGER in kinds and OpenAPIType.NUMBER in kinds:
                node.one_of = [
                    s
                    for s in node.one_of
                    if not (isinstance(s, Schema) and s.type == OpenAPIType.INTEGER)
                ]
        for value in vars(node).values():
            _drop_overlapping_integer(value, seen)
    elif is_dataclass(node) and not isinstance(node, type):  # PathItem, Operation, ...
        for value in vars(node).values():
            _drop_overlapping_integer(value, seen)
    elif isinstance(node, dict):
        for value in node.values():
            _drop_overlapping_integer(value, seen)
    elif isinstance(node, list | tuple):
        for value in node:
            _drop_overlapping_integer(value, seen)


def finalize_openapi(app: Litestar) -> None:
    """Describe our error contract in the generated document: invalid input is a 422
    problem (not Litestar's default 400), and every class of route documents the errors
    the core gives it (`_response_classes`); guarded admin routes declare the
    `staffBearer` scheme. Runs once, before the document is first served or exported."""
    from app.core.errors import Problem

    openapi = app.openapi_schema
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    openapi.components.schemas["Problem"] = schema_from_dict(inline_schema(Problem))
    _drop_overlapping_integer(openapi.components.schemas, set())
    _drop_overlapping_integer(openapi.paths, set())
    schemes = openapi.components.security_schemes
    if schemes is not None and "staffBearer" not in schemes:
        schemes["staffBearer"] = SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description="Staff access token from `POST /admin/v1/auth/login`",
        )
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
            if path.startswith("/admin/v1") and not path.startswith("/admin/v1/auth"):
                op.security = [{"staffBearer": []}]
            responses = op.responses if op.responses is not None else {}
            default_400 = responses.get("400")
            if isinstance(default_400, OpenAPIResponse) and default_400.description == (
                LITESTAR_400
            ):
                responses.pop("400")
            for status, description in _response_classes(path, method, op).items():
                if status not in responses or status == "422":
                    responses[status] = OpenAPIResponse(description=description, content=problem)
            op.responses = dict(sorted(responses.items()))


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
