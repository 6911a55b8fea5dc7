"""Schema validation of every OCPP 1.6 message, fast enough for 3,000 messages/s.

The ocpp library validates each CALL and CallResult against the official JSON schemas
with ``jsonschema.Draft4Validator``, which costs ~150 µs for a MeterValues: half of the
central system's CPU at load. The OCPP 1.6 schemas use a small subset of JSON Schema
(type, properties, required, additionalProperties: false, enum, maxLength, items,
minItems), so :func:`install` compiles each schema that stays inside that subset into
plain Python checks and puts them in the library's own validator cache
(``ocpp.messages._validators``). Validation stays on and means the same: the checks run
in jsonschema's order and raise ``jsonschema.ValidationError`` with the same failing
keyword, so the library maps them to the same CallError codes. Schemas outside the
subset ($ref, multipleOf with its Decimal parsing) keep the library's validator.
tests/chargers/test_validation.py compares both on valid and broken payloads of every
schema. :func:`install` is written for one ocpp release (``fastpath.OCPP_VERSION``) and
checks the library still finds validators where it puts them; tests/chargers/test_patches.py
checks that the library's own lookup returns the compiled ones.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import ocpp.messages
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

from app.chargers.fastpath import LibraryPatchError, require_globals, require_ocpp

Check = Callable[[Any], None]

# Keywords without effect on validation here (no format checker, as in the library).
_IGNORED: Final = frozenset({"$schema", "$id", "id", "title", "description", "format"})


def _is_integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Number) and not isinstance(v, bool)


_TYPES: Final[dict[str, Callable[[Any], bool]]] = {
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def _fail(keyword: str, message: str) -> None:
    raise ValidationError(message, validator=keyword)


def _type(name: str) -> Check:
    test = _TYPES[name]

    def check(instance: Any) -> None:
        if not test(instance):
            _fail("type", f"{instance!r} is not of type {name!r}")

    return check


def _properties(subchecks: list[tuple[str, Check]]) -> Check:
    def check(instance: Any) -> None:
        if isinstance(instance, dict):
            for name, sub in subchecks:
                if name in instance:
                    sub(instance[name])

    return check


def _required(names: list[str]) -> Check:
    def check(instance: Any) -> None:
        if isinstance(instance, dict):
            for name in names:
                if name not in instance:
                    _fail("required", f"{name!r} is a required property")

    return check


def _no_additional(allowed: frozenset[str]) -> Check:
    def check(instance: Any) -> None:
        if isinstance(instance, dict):
            for name in instance:
                if name not in allowed:
                    extras = sorted(k for k in instance if k not in allowed)
                    _fail("additionalProperties", f"Additional properties are not allowed {extras}")

    return check


def _enum(values: list[str]) -> Check:
    allowed = frozenset(values)

    def check(instance: Any) -> None:
        if not isinstance(instance, str) or instance not in allowed:
            _fail("enum", f"{instance!r} is not one of {values!r}")

    return check


def _max_length(limit: int) -> Check:
    def check(instance: Any) -> None:
        if isinstance(instance, str) and len(instance) > limit:
            _fail("maxLength", f"{instance!r} is too long")

    return check


def _min_items(limit: int) -> Check:
    def check(instance: Any) -> None:
        if isinstance(instance, list) and len(instance) < limit:
            _fail("minItems", f"{instance!r} is too short")

    return check


def _items(sub: Check) -> Check:
    def check(instance: Any) -> None:
        if isinstance(instance, list):
            for item in instance:
                sub(item)

    return check


def compile_schema(schema: Any) -> Check | None:
    """Checks equivalent to Draft4Validator(schema) for the subset, else None."""
    if not isinstance(schema, dict):
        return None
    checks: list[Check] = []
    for key, value in schema.items():
        if key in _IGNORED:
            continue
        if key == "type":
            if not isinstance(value, str) or value not in _TYPES:
                return None
            checks.append(_type(value))
        elif key == "properties":
            if not isinstance(value, dict):
                return None
            subchecks = []
            for name, subschema in value.items():
                sub = compile_schema(subschema)
                if sub is None:
                    return None
                subchecks.append((name, sub))
            checks.append(_properties(subchecks))
        elif key == "required":
            if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
                return None
            checks.append(_required(value))
        elif key == "additionalProperties":
            if value is True:
                continue
            if value is not False or "patternProperties" in schema:
                return None
            checks.append(_no_additional(frozenset(schema.get("properties") or {})))
        elif key == "enum":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return None
            checks.append(_enum(value))
        elif key == "maxLength":
            if not _is_integer(value):
                return None
            checks.append(_max_length(value))
        elif key == "minItems":
            if not _is_integer(value):
                return None
            checks.append(_min_items(value))
        elif key == "items":
            sub = compile_schema(value)
            if sub is None:
                return None
            checks.append(_items(sub))
        else:
            return None  # $ref, multipleOf, …: the library's validator

    def check_all(instance: Any) -> None:
        for check in checks:
            check(instance)

    return check_all


class CompiledValidator:
    """What the ocpp library calls on a cached validator: ``validate(instance)``."""

    def __init__(self, check: Check, schema: dict[str, Any]) -> None:
        self.check = check
        self.schema = schema

    def validate(self, instance: Any) -> None:
        self.check(instance)


def schema_files(ocpp_version: str = "1.6") -> list[Path]:
    folder = Path(ocpp.messages.__file__).parent / ("v" + ocpp_version.replace(".", ""))
    return sorted((folder / "schemas").glob("*.json"))


def installed(ocpp_version: str = "1.6") -> bool:
    """The library's own lookup returns a compiled validator (MeterValues as the probe)."""
    cache = getattr(ocpp.messages, "_validators", None)
    return isinstance(cache, dict) and isinstance(
        cache.get(f"MeterValues_{ocpp_version}"), CompiledValidator
    )


def install(ocpp_version: str = "1.6") -> list[str]:
    """Put compiled validators into the library's cache (idempotent); returns the schema
    names. Raises :class:`LibraryPatchError` when the library is not the release this was
    written for or no longer reads that cache."""
    if ocpp_version != "1.6":
        raise ValueError("only OCPP 1.6 schemas are compiled")
    require_ocpp()
    cache = getattr(ocpp.messages, "_validators", None)
    if not isinstance(cache, dict):
        raise LibraryPatchError("ocpp.messages._validators is gone: patch stale")
    require_globals(
        getattr(ocpp.messages, "get_validator", None), ("_validators",), "ocpp get_validator"
    )
    require_globals(
        getattr(ocpp.messages, "_validate_payload", None),
        ("get_validator",),
        "ocpp _validate_payload",
    )
    files = schema_files(ocpp_version)
    if not files:
        raise LibraryPatchError(f"no OCPP {ocpp_version} schemas inside the ocpp package")
    done = []
    for path in files:
        if isinstance(cache.get(f"{path.stem}_{ocpp_version}"), CompiledValidator):
            done.append(path.stem)
            continue
        schema = json.loads(path.read_text(encoding="utf-8-sig"))
        check = compile_schema(schema)
        if check is None:
            continue
        # The library's cache key (ocpp.messages.get_validator): schema name + version.
        cache[f"{path.stem}_{ocpp_version}"] = CompiledValidator(check, schema)
        done.append(path.stem)
    probe = ocpp.messages.get_validator(2, "MeterValues", ocpp_version)
    if not isinstance(probe, CompiledValidator):
        raise LibraryPatchError("ocpp.messages.get_validator does not return ours: stale")
    return done
