"""Stand-ins for the outside services Voltway talks to (tests, demo, bench)."""
