"""Adapters: everything that talks to PostgreSQL, Redis or the file system."""
