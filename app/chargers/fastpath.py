"""Per-message overheads of the ocpp library, cached (same results, less CPU).

Profiling 10,000 chargers at load (bench/ocpp_load.py) showed, besides schema validation
(app/chargers/validation.py), the library spending its time on work that repeats for
every message: ``inspect.signature(handler)`` (twice per CALL, ~15 % of the event loop)
and the regex key conversions camelCase ⇄ snake_case of every payload. :func:`install`
swaps in cached equivalents inside ``ocpp.charge_point``: signatures cached per
function, key conversions cached per key. tests/chargers/test_validation.py checks that
the conversions give the library's results.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Final

import ocpp.charge_point

ORIGINAL_CAMEL_TO_SNAKE: Final = ocpp.charge_point.camel_to_snake_case
ORIGINAL_SNAKE_TO_CAMEL: Final = ocpp.charge_point.snake_to_camel_case


@functools.lru_cache(maxsize=4096)
def _snake_key(key: str) -> str:
    converted: dict[str, Any] = ORIGINAL_CAMEL_TO_SNAKE({key: None})
    return next(iter(converted))


@functools.lru_cache(maxsize=4096)
def _camel_key(key: str) -> str:
    converted: dict[str, Any] = ORIGINAL_SNAKE_TO_CAMEL({key: None})
    return next(iter(converted))


def camel_to_snake_case(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            (_snake_key(k) if isinstance(k, str) else k): camel_to_snake_case(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [camel_to_snake_case(v) for v in data]
    return data


def snake_to_camel_case(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            (_camel_key(k) if isinstance(k, str) else k): snake_to_camel_case(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [snake_to_camel_case(v) for v in data]
    return data


@functools.lru_cache(maxsize=1024)
def _signature_of(function: Any) -> inspect.Signature:
    return inspect.signature(function)


class _CachedInspect:
    """``inspect`` as ocpp.charge_point uses it, with ``signature`` cached per function
    (a bound method's parameters are its function's minus ``self``; the library only
    asks whether ``call_unique_id`` is among them)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)

    @staticmethod
    def signature(obj: Any) -> inspect.Signature:
        function = getattr(obj, "__func__", None)
        if function is None:
            return inspect.signature(obj)
        try:
            return _signature_of(function)
        except TypeError:  # unhashable
            return inspect.signature(obj)


def install() -> None:
    ocpp.charge_point.inspect = _CachedInspect()  # type: ignore[attr-defined]
    ocpp.charge_point.camel_to_snake_case = camel_to_snake_case  # type: ignore[attr-defined]
    ocpp.charge_point.snake_to_camel_case = snake_to_camel_case  # type: ignore[attr-defined]
