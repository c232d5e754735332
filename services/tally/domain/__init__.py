"""Pure business rules: no I/O here."""
