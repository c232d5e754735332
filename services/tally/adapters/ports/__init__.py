"""Protocols the service layer needs from the adapters (one module per store)."""
