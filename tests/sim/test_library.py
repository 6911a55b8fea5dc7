"""The simulator runs on the same patched ocpp library whatever was imported first."""

from __future__ import annotations

import subprocess
import sys

from app.core.settings import ROOT

PROBE = """
import sys
import app.sim
from app.chargers import fastpath, validation
assert "app.chargers.central" not in sys.modules
assert not fastpath.installed() and not validation.installed()
app.sim.SimCharger("ws://127.0.0.1:9/ocpp", "CP-1", None)
assert fastpath.installed() and validation.installed()
print("ok")
"""


def test_a_sim_charger_installs_the_patches_without_the_central_system() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
