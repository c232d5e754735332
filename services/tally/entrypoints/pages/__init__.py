"""The pages under /ui: Jinja2 templates, htmx, server-side SVG charts (mounted by the API)."""
