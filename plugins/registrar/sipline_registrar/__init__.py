"""sipline-registrar: SIP registrar and location service for sipline."""
