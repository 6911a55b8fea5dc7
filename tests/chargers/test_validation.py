"""The compiled OCPP 1.6 schema checks (app/chargers/validation.py) decide exactly as the
library's jsonschema Draft4Validator: same verdict, same failing keyword (which picks the
CallError code), on valid and broken payloads of every schema."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from jsonschema import Draft4Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]
from ocpp.exceptions import FormatViolationError, TypeConstraintViolationError
from ocpp.messages import Call, _validate_payload, get_validator

import app.chargers.central  # noqa: F401 - installs the compiled validators
from app.chargers import fastpath
from app.chargers.validation import CompiledValidator, compile_schema, schema_files

SCHEMAS = {p.stem: json.loads(p.read_text(encoding="utf-8-sig")) for p in schema_files()}
COMPILED = {name: check for name, s in SCHEMAS.items() if (check := compile_schema(s)) is not None}

WRONG: dict[str, list[Any]] = {
    "string": [1, None, True, ["x"]],
    "integer": ["1", 1.0, 1.5, True, None, Decimal(1)],
    "number": ["1", True, None],
    "boolean": [1, "true", None],
    "object": [[], "x", 1],
    "array": [{}, "x", 1],
}


def example(schema: dict[str, Any]) -> Any:
    """A valid instance: every property present, lists with two items."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][-1]
    if kind == "object":
        return {name: example(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example(schema.get("items") or {}), example(schema.get("items") or {})]
    if kind == "string":
        return "x" * min(int(schema.get("maxLength", 20)), 20)
    if kind == "integer":
        return 7
    if kind == "number":
        return 7.5
    if kind == "boolean":
        return True
    return None


def _paths(schema: dict[str, Any], path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    for name, sub in (schema.get("properties") or {}).items():
        yield from _paths(sub, (*path, name))
    if isinstance(schema.get("items"), dict):
        yield from _paths(schema["items"], (*path, 0))


def _schema_at(schema: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    for step in path:
        schema = schema["items"] if isinstance(step, int) else schema["properties"][step]
    return schema


def _set(instance: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(instance)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def variants(schema: dict[str, Any]) -> Iterator[Any]:
    """Valid and broken payloads: a wrong type, an unknown enum value, an overlong string,
    a missing required property, an extra property, an empty list — at every depth."""
    base = example(schema)
    yield base
    yield {}
    for path in _paths(schema):
        sub = _schema_at(schema, path)
        for wrong in WRONG.get(str(sub.get("type")), []):
            yield _set(base, path, wrong)
        if "enum" in sub:
            yield _set(base, path, "NotAnEnumValue")
        if "maxLength" in sub:
            yield _set(base, path, "y" * (sub["maxLength"] + 1))
            yield _set(base, path, "y" * sub["maxLength"])
        if sub.get("type") == "array":
            yield _set(base, path, [])
        if sub.get("type") == "object":
            node = _set(base, path, {**example(sub), "unexpected": 1})
            yield node
            for name in sub.get("required") or []:
                reduced = {k: v for k, v in example(sub).items() if k != name}
                yield _set(base, path, reduced)
            yield _set(base, path, {**{k: 1 for k in sub.get("required") or []}, "x": "y"})


def _library_verdict(schema: dict[str, Any], instance: Any) -> str | None:
    error = next(iter(Draft4Validator(schema).iter_errors(instance)), None)
    return None if error is None else str(error.validator)


def _compiled_verdict(name: str, instance: Any) -> str | None:
    try:
        COMPILED[name](instance)
    except ValidationError as exc:
        return str(exc.validator)
    return None


def test_most_schemas_are_compiled_and_the_hot_ones_all_are() -> None:
    assert len(COMPILED) >= 50
    for name in ("StatusNotification", "MeterValues", "Heartbeat", "BootNotification"):
        assert name in COMPILED
        assert f"{name}Response" in COMPILED


@pytest.mark.parametrize("name", sorted(COMPILED))
def test_compiled_checks_decide_like_jsonschema(name: str) -> None:
    schema = SCHEMAS[name]
    count = 0
    for instance in variants(schema):
        assert _compiled_verdict(name, instance) == _library_verdict(schema, instance), (
            f"{name}: {instance!r}"
        )
        count += 1
    assert count >= 2


def test_the_library_uses_the_compiled_checks_with_its_own_error_codes() -> None:
    assert isinstance(get_validator(2, "MeterValues", "1.6"), CompiledValidator)
    assert isinstance(get_validator(3, "StatusNotification", "1.6"), CompiledValidator)
    good = Call(
        "u1",
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    )
    _validate_payload(good, "1.6")
    wrong_type = Call(
        "u2",
        "StatusNotification",
        {"connectorId": "1", "errorCode": "NoError", "status": "Available"},
    )
    with pytest.raises(TypeConstraintViolationError):
        _validate_payload(wrong_type, "1.6")
    bad_enum = Call(
        "u3", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Dancing"}
    )
    with pytest.raises(FormatViolationError):
        _validate_payload(bad_enum, "1.6")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_cached_key_conversions_give_the_librarys_results(name: str) -> None:
    payload = example(SCHEMAS[name])
    snake = fastpath.ORIGINAL_CAMEL_TO_SNAKE(payload)
    assert fastpath.camel_to_snake_case(payload) == snake
    assert list(fastpath.camel_to_snake_case(payload)) == list(snake)
    assert fastpath.snake_to_camel_case(snake) == fastpath.ORIGINAL_SNAKE_TO_CAMEL(snake)
