"""Charger link: the OCPP 1.6J central system (INTEGRATIONS.md §1)."""
