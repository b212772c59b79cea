"""sipline-auth: SIP digest authentication against the OpenSIPS ``subscriber`` table."""
