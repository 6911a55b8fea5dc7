"""The ``ocpp`` library as the simulator runs it, whatever was imported before.

The central system patches the library process-wide (compiled schema checks,
app/chargers/validation.py; cached signatures and key conversions,
app/chargers/fastpath.py). Which library a simulated charger ran on used to depend on
whether ``app.chargers.central`` had been imported first (tests: yes; ``python -m
app.sim``: only because ``main`` installed them itself), and a name imported from
``ocpp.charge_point`` was the original or the patched function depending on import order.
Every SimCharger now calls :func:`prepare` (idempotent), and the simulator's own key
conversion is named here, not looked up in the library.
"""

from __future__ import annotations

from app.chargers import fastpath, validation

__all__ = ["camel_to_snake_case", "prepare"]

camel_to_snake_case = fastpath.camel_to_snake_case


def prepare() -> None:
    """Install the same library patches as the central system (a no-op once done)."""
    if not (validation.installed() and fastpath.installed()):
        validation.install()
        fastpath.install()
