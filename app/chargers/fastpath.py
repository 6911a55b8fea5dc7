"""Per-message overheads of the ocpp library, cached (same results, less CPU).

Profiling 10,000 chargers at load (bench/ocpp_load.py) showed, besides schema validation
(app/chargers/validation.py), the library spending its time on work that repeats for
every message: ``inspect.signature(handler)`` (twice per CALL, ~15 % of the event loop)
and the regex key conversions camelCase ⇄ snake_case of every payload. :func:`install`
swaps in cached equivalents inside ``ocpp.charge_point``: signatures cached per
function, key conversions cached per key. tests/chargers/test_validation.py checks that
the conversions give the library's results.

The patches reach into the library's module globals, so they are written for one release
(:data:`OCPP_VERSION`, pinned in pyproject.toml and requirements.lock). :func:`install`
refuses any other release and checks that the library still looks those names up where it
is patched (otherwise the patch would silently do nothing); tests/chargers/test_patches.py
checks that it took effect.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
from typing import Any, Final

import ocpp.charge_point

# The ocpp release these patches (and app/chargers/validation.py) were written against.
OCPP_VERSION: Final = "2.1.0"


class LibraryPatchError(RuntimeError):
    """The installed ocpp library is not the one our patches were written for."""


def require_ocpp(installed: str | None = None) -> None:
    """Raise unless the installed ocpp (or ``installed``) is :data:`OCPP_VERSION`."""
    if installed is None:
        installed = importlib.metadata.version("ocpp")
    if installed != OCPP_VERSION:
        raise LibraryPatchError(
            f"ocpp {installed} is installed; app/chargers/fastpath.py and validation.py "
            f"patch ocpp {OCPP_VERSION} internals: re-check them against {installed}, "
            "then update OCPP_VERSION and the pins"
        )


def require_globals(function: Any, names: tuple[str, ...], where: str) -> None:
    """Raise unless ``function`` (of the library) reads each of ``names`` as a global."""
    code = getattr(function, "__code__", None)
    used = set() if code is None else set(code.co_names)
    missing = [name for name in names if name not in used]
    if missing:
        raise LibraryPatchError(f"{where} no longer uses {', '.join(missing)}: patch stale")


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


# Where the library uses what install() replaces (module globals of ocpp.charge_point).
_PATCHED: Final = ("inspect", "camel_to_snake_case", "snake_to_camel_case")
_USERS: Final = {
    "_handle_call": ("camel_to_snake_case", "snake_to_camel_case", "inspect"),
    "call": ("camel_to_snake_case", "snake_to_camel_case"),
}


def installed() -> bool:
    """The cached equivalents are in place inside ``ocpp.charge_point``."""
    module = ocpp.charge_point
    return (
        isinstance(getattr(module, "inspect", None), _CachedInspect)
        and getattr(module, "camel_to_snake_case", None) is camel_to_snake_case
        and getattr(module, "snake_to_camel_case", None) is snake_to_camel_case
    )


def install() -> None:
    """Swap the cached equivalents into ``ocpp.charge_point`` (idempotent); raises
    :class:`LibraryPatchError` when the library is not the release they were written for."""
    if installed():
        return
    require_ocpp()
    module = ocpp.charge_point
    for name in _PATCHED:
        if not hasattr(module, name):
            raise LibraryPatchError(f"ocpp.charge_point.{name} is gone: patch stale")
    for method, names in _USERS.items():
        require_globals(getattr(module.ChargePoint, method, None), names, f"ChargePoint.{method}")
    module.inspect = _CachedInspect()  # type: ignore[attr-defined]
    module.camel_to_snake_case = camel_to_snake_case  # type: ignore[attr-defined]
    module.snake_to_camel_case = snake_to_camel_case  # type: ignore[attr-defined]
    if not installed():
        raise LibraryPatchError("ocpp.charge_point did not take the cached equivalents")
