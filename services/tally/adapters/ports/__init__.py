"""Ports: Protocols the service layer depends on; adapters implement them, bootstrap wires."""
