"""Payments: Stripe customers, cards, holds, captures, refunds, webhooks (issue 12)."""
