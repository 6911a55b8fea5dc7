"""The library patches (app/chargers/fastpath.py, validation.py) are pinned to the ocpp
release they were written for, refuse a stale library loudly, and take effect: the
library's own code paths run our compiled validators and cached conversions when a real
charger talks to the central system."""

from __future__ import annotations

import re
import tomllib

import ocpp.charge_point
import ocpp.messages
import pytest

from app.chargers import fastpath, validation
from app.chargers.validation import CompiledValidator
from app.core.settings import ROOT
from app.sim import connect
from tests.chargers.conftest import PASSWORD, Server, fast_sim, onboard


def test_ocpp_pinned_to_the_patched_release() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"ocpp=={fastpath.OCPP_VERSION}" in deps
    lock = (ROOT / "requirements.lock").read_text()
    assert re.search(rf"^ocpp=={re.escape(fastpath.OCPP_VERSION)}$", lock, re.MULTILINE)
    fastpath.require_ocpp()  # the venv has that release


def test_another_release_is_refused() -> None:
    with pytest.raises(fastpath.LibraryPatchError, match=r"ocpp 2\.2\.0 is installed"):
        fastpath.require_ocpp("2.2.0")


def test_a_moved_target_is_refused() -> None:
    def handler_without_the_names() -> None:
        return None

    with pytest.raises(fastpath.LibraryPatchError, match="no longer uses camel_to_snake_case"):
        fastpath.require_globals(
            handler_without_the_names, ("camel_to_snake_case",), "ChargePoint._handle_call"
        )


def test_install_is_idempotent() -> None:
    fastpath.install()
    validation.install()
    inspect_patch = ocpp.charge_point.inspect  # type: ignore[attr-defined]
    meter_values = ocpp.messages._validators["MeterValues_1.6"]
    fastpath.install()
    assert validation.install()
    assert ocpp.charge_point.inspect is inspect_patch  # type: ignore[attr-defined]
    assert ocpp.messages._validators["MeterValues_1.6"] is meter_values


async def test_patches_take_effect_on_real_traffic(server: Server) -> None:
    """The central system's library answers a charger through our functions."""
    assert fastpath.installed()
    assert validation.installed()
    assert ocpp.charge_point.camel_to_snake_case is fastpath.camel_to_snake_case  # type: ignore[attr-defined]
    assert isinstance(
        ocpp.messages.get_validator(2, "StatusNotification", "1.6"), CompiledValidator
    )
    await onboard(server, "CP-PATCH")
    fastpath._snake_key.cache_clear()
    fastpath._signature_of.cache_clear()
    charger = await connect(server.ocpp_url, "CP-PATCH", PASSWORD, options=fast_sim())
    try:
        await charger.set_status(1, "Preparing")
        await charger.send_meter_values(1, energy_wh=1234.0, power_w=7000.0)
    finally:
        await charger.close()
    # Keys of BootNotification/StatusNotification/MeterValues went through the cached
    # conversion, and the handlers' signatures through the cached inspect.signature.
    assert fastpath._snake_key.cache_info().currsize > 0
    assert fastpath._signature_of.cache_info().hits > 0
