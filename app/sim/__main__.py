"""``python -m app.sim``: see app/sim/fleet.py."""

from app.sim.fleet import main

raise SystemExit(main())
