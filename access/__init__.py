"""Access control: two-factor login, lockout, the client's address (README "Access control")."""
