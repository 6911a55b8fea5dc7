"""Reservations: hold a connector now or book a slot later (API.md "Reservations")."""
