"""`python -m app …` — see `python -m app --help`."""

from app.cli import main

raise SystemExit(main())
