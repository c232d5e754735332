"""Thin entrypoints: the CLI, the consumer, the HTTP API. They translate and delegate."""
