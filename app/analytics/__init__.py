"""Usage analytics for CPO staff: sessions, energy, revenue and utilisation over a period."""
