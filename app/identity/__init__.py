"""Driver identity: SMS-code login, access and rotating refresh tokens, profile, vehicle."""
