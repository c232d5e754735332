"""Ports: the Protocols the service layer works through; the concrete adapters implement them."""
